//! `gridmuc loadtest`: the real bot and N real meter agents against a private Prosody,
//! ejabberd or two-node ejabberd cluster on loopback (`--server`), measuring what the issue
//! asks: readings/s ingested, stanzas/s the server delivered (Prosody only), reading→bot
//! latency, CPU of the server (every node), of our bot alone (its thread) per ingested reading
//! and of the meters, and losses.
//!
//! Latency is measured in-process on one clock: the meter's `Sent` event carries the instant
//! the stanza was handed to its session, the bot's metric tap the instant it decoded it.

use crate::reference_bot::{Login, ReferenceBot};
use crate::target::{Running, Target};
use anyhow::Context;
use gridmuc_core::{AggregatorConfig, RoomNick, Watts};
use gridmuc_server::{PrivateServer, RoomPolicy, generate_password};
use gridmuc_xmpp::bot::{AckBatch, BotConfig, BotError, BotEvent, BotReport, run_bot};
use gridmuc_xmpp::connect::ConnectConfig;
use gridmuc_xmpp::meter::{MeterConfig, MeterError, MeterEvent, MeterReport, Mode, run_meter};
use gridmuc_xmpp::metrics::{Metrics, ReadingTap};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// The server: `prosody`, `ejabberd`, or `ejabberd-cluster` (meters on node 0, the bot
    /// and the room on node 1).
    #[arg(long, value_enum, default_value = "prosody")]
    pub server: Target,
    /// Number of houses (meter agents, one XMPP session each).
    #[arg(long, default_value_t = 100)]
    pub houses: usize,
    /// Readings per second per house (the meters' interval is 1/rate).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// `direct` (private to the bot through the room) or `broadcast` (to every occupant).
    #[arg(long, default_value = "direct")]
    pub mode: Mode,
    /// Length of the measured window, after every house has joined.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// New logins per second while the neighbourhood ramps up.
    #[arg(long, default_value_t = 50.0)]
    pub logins_per_second: f64,
    /// Seconds from the first login until the first reading (default: the ramp's planned
    /// length × 1.5 + 5 s). Raise it when logins are slower than planned: readings that start
    /// while hundreds of houses still log in measure a login storm, not the steady state (a
    /// busy Prosody then answers acks and pings late, and meters resend and reconnect).
    #[arg(long)]
    pub start_after: Option<f64>,
    /// Houses logging in at the same time, at most (each login is two TLS handshakes and
    /// SCRAM exchanges; too many at once time out on a busy server).
    #[arg(long, default_value_t = 16)]
    pub max_logins: usize,
    /// Run the server with XEP-0198 stream management (off by default, as in the demo).
    #[arg(long)]
    pub smacks: bool,
    /// How the bot answers direct readings: `batched` (one signed ack per meter covering up
    /// to 16 readings or 5 s, the default) or `each` (one ack per reading, the rhythm before
    /// cumulative acks), so what batching saves a server is measured with one binary.
    #[arg(long, value_enum, default_value = "batched")]
    pub acks: Acks,
    /// Let the bot post its per-interval summary to the room (one groupchat to every house).
    #[arg(long)]
    pub summaries: bool,
    /// Broadcast meters send on schedule without waiting for the room's echo (reproduces the
    /// flood of issue 5; see docs/flood.md).
    #[arg(long)]
    pub unpaced: bool,
    /// Fail (exit non-zero, after the report) if the window's p99 reading→bot latency is
    /// above this many milliseconds.
    #[arg(long, default_value_t = 250.0)]
    pub max_p99_ms: f64,
    /// Fail (exit non-zero, after the report) if more readings than this were lost over the
    /// whole run (sent but not accepted, the report's `lost`).
    #[arg(long, default_value_t = 0)]
    pub max_lost: u64,
    /// Also run a reference bot in the room, taking the same broadcast readings, and report
    /// its CPU per reading beside ours (needs `--mode broadcast`: only groupchat readings reach
    /// both bots).
    #[arg(long, value_enum)]
    pub reference: Option<Reference>,
}

/// A reference bot for `--reference`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Reference {
    /// A minimal bot on slixmpp (Python), which sums each reading's power by interval.
    Slixmpp,
}

/// How the bot answers direct readings (`--acks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Acks {
    /// The bot's default [`AckBatch`].
    Batched,
    /// [`AckBatch::EACH`]: one ack per reading.
    Each,
}

/// The bot's room nickname.
const BOT_NICK: &str = "substation";
/// How often the bot's tapped readings are collected (latency is stamped when tapped).
const TAP_EVERY: Duration = Duration::from_millis(50);
/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ; 100 on every Linux we run on).
const TICKS_PER_SECOND: f64 = 100.0;

/// Runs the load test and prints the figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.houses >= 1, "--houses must be at least 1");
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 20.0,
        "--rate must be in (0, 20] readings/s"
    );
    let interval = Duration::try_from_secs_f64(1.0 / args.rate).context("--rate")?;
    let window = Duration::try_from_secs_f64(args.seconds).context("--seconds")?;
    anyhow::ensure!(window >= interval * 2, "--seconds must cover two intervals");
    anyhow::ensure!(
        args.max_p99_ms.is_finite() && args.max_p99_ms >= 0.0,
        "--max-p99-ms must be a non-negative number"
    );
    anyhow::ensure!(
        args.reference.is_none() || args.mode == Mode::Broadcast,
        "--reference needs --mode broadcast: direct readings reach our bot only"
    );

    eprintln!("starting a private {} on loopback …", args.server.name());
    let server = Running::start(args.server, args.smacks, None)?;
    anyhow::ensure!(!server.pids().is_empty(), "the server is not running");
    let mut accounts = vec![("substation".to_owned(), generate_password())];
    accounts.extend((0..args.houses).map(|i| (format!("house{i}"), generate_password())));
    let reference_account = ("reference".to_owned(), generate_password());
    if args.reference.is_some() {
        accounts.push(reference_account.clone());
    }
    server.register_many(&accounts)?;
    let room = server.provision_room("neighbourhood", &RoomPolicy::default())?;
    if let Some(prosody) = server.prosody() {
        prosody.admin_lua(&count_deliveries_lua(server.domain()))?;
    }
    // Account 0 is the bot's; a cluster serves it on another node than the meters.
    let account = |i: usize| {
        let (user, password) = &accounts[i];
        let addr = if i == 0 {
            server.bot_addr()
        } else {
            server.meter_addr()
        };
        let mut cfg = ConnectConfig::private_tls(
            &format!("{user}@{}", server.domain()),
            password,
            &addr.to_string(),
            server.ca_cert_pem(),
        );
        cfg.timeout = Duration::from_secs(30);
        cfg
    };

    let interval_ms = i64::try_from(interval.as_millis()).context("--rate")?;
    let mut bot = BotConfig::new(account(0), &room);
    bot.nick = BOT_NICK.to_owned();
    bot.post_summaries = args.summaries;
    bot.acks = match args.acks {
        Acks::Batched => AckBatch::default(),
        Acks::Each => AckBatch::EACH,
    };
    bot.aggregator = AggregatorConfig {
        interval: interval_ms.max(1),
        // Generous: late readings show up in the latency figures, not as rejections.
        grace: 5_000,
        ..AggregatorConfig::default()
    };
    // No overload alerts: the load test measures readings, not alert fan-out.
    bot.aggregator.overload.rating = Watts(25_000 * i64::try_from(args.houses)?);
    // Readings start together once the ramp should be over: a broadcast flood that starts
    // while houses still log in starves their TLS and SASL round trips (docs/flood.md).
    let ramp_estimate = args
        .start_after
        .unwrap_or(args.houses as f64 / args.logins_per_second.max(0.1) * 1.5 + 5.0);
    let not_before = std::time::SystemTime::now()
        + Duration::try_from_secs_f64(ramp_estimate)
            .context("--start-after or --logins-per-second")?;
    let meters: Vec<MeterConfig> = (1..=args.houses)
        .map(|i| {
            let mut m = MeterConfig::new(account(i), &room);
            m.mode = args.mode;
            m.bot_nick = BOT_NICK.to_owned();
            m.interval = interval;
            // Uniform over the interval, so the aggregate rate is flat rather than bursty.
            m.jitter = [0.0, 0.95];
            // No rotation inside a load test.
            m.rotate = [1e6, 1e6];
            m.pace_broadcast = !args.unpaced;
            m.not_before = Some(not_before);
            m
        })
        .collect();
    println!(
        "loadtest: {} houses × {} reading/s, {:?} mode{}, acks {:?}, XEP-0198 {}, summaries {}, window {:.0} s",
        args.houses,
        args.rate,
        args.mode,
        if args.unpaced { " (unpaced)" } else { "" },
        args.acks,
        if args.smacks { "on" } else { "off" },
        if args.summaries { "on" } else { "off" },
        args.seconds
    );
    let mut reference = match args.reference {
        Some(Reference::Slixmpp) => {
            let jid = format!("{}@{}", reference_account.0, server.domain());
            let bot = ReferenceBot::start(&Login {
                jid: &jid,
                password: &reference_account.1,
                addr: server.bot_addr(),
                ca_pem: server.ca_cert_pem(),
                room: &room,
                nick: "reference",
            })?;
            eprintln!("reference bot (slixmpp) joined");
            Some(bot)
        }
        None => None,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let plan = Plan {
        window,
        ramp: Duration::try_from_secs_f64(1.0 / args.logins_per_second.max(0.1))
            .context("--logins-per-second")?,
        interval,
        start: not_before,
        max_logins: args.max_logins.max(1),
    };
    let result = rt.block_on(drive(&server, bot, meters, &plan, reference.as_mut()));
    drop(rt);
    drop(reference);
    server.stop()?;
    let figures = result?;
    figures.print(&args);
    let bounds = Bounds {
        max_p99_ms: args.max_p99_ms,
        max_lost: args.max_lost,
    };
    let missed = bounds.missed(
        figures.lost(),
        figures.latencies_us.len(),
        percentile(&figures.latencies_us, 0.99) as f64 / 1000.0,
    );
    anyhow::ensure!(missed.is_empty(), "loadtest failed: {}", missed.join("; "));
    Ok(())
}

/// What a run must achieve to pass.
struct Bounds {
    max_p99_ms: f64,
    max_lost: u64,
}

impl Bounds {
    /// One sentence per bound the run missed (empty when it passed), naming its option.
    fn missed(&self, lost: u64, samples: usize, p99_ms: f64) -> Vec<String> {
        let mut missed = Vec::new();
        if lost > self.max_lost {
            missed.push(format!(
                "{lost} readings lost (sent but not accepted, or never sent), more than --max-lost {}",
                self.max_lost
            ));
        }
        if samples == 0 {
            // No sample would make any latency bound pass vacuously.
            missed.push(
                "no reading reached the bot inside the window, so the --max-p99-ms bound \
                 cannot be met"
                    .to_owned(),
            );
        } else if p99_ms > self.max_p99_ms {
            missed.push(format!(
                "p99 latency {p99_ms:.1} ms is above --max-p99-ms {}",
                self.max_p99_ms
            ));
        }
        missed
    }
}

/// Lua that installs a counter of every message and presence the server hands to a client
/// of `domain` (the `…/full` events of the account host), read with [`READ_DELIVERIES_LUA`].
fn count_deliveries_lua(domain: &str) -> String {
    format!("local host = prosody.hosts[\"{domain}\"]\n{COUNT_DELIVERIES_BODY}")
}

/// The domain-independent part of [`count_deliveries_lua`].
const COUNT_DELIVERIES_BODY: &str = r#"if not prosody.gridmuc_delivered then
  local counts = { message = 0, presence = 0 }
  prosody.gridmuc_delivered = counts
  for kind in pairs(counts) do
    host.events.add_handler(kind .. "/full", function() counts[kind] = counts[kind] + 1 end, 1000)
  end
end
return "counting""#;
/// Reads the counter installed by [`count_deliveries_lua`]: `messages presences`.
const READ_DELIVERIES_LUA: &str = r#"local c = prosody.gridmuc_delivered
return "deliveries " .. c.message .. " " .. c.presence"#;

/// Timing of one run.
struct Plan {
    window: Duration,
    ramp: Duration,
    interval: Duration,
    /// When the meters send their first readings.
    start: std::time::SystemTime,
    /// Houses logging in at the same time, at most.
    max_logins: usize,
}

/// What one run measured.
struct Figures {
    joined: usize,
    ramp: Duration,
    window: Duration,
    sent_in_window: u64,
    ingested_in_window: u64,
    /// Messages and presences delivered to clients, if the admin shell answered both times.
    delivered: Option<(u64, u64)>,
    server_cpu: f64,
    own_cpu: f64,
    /// The bot thread's share of `own_cpu` (TLS, XML, tokio-xmpp and our work, all on it).
    bot_cpu: f64,
    latencies_us: Vec<u64>,
    sent_total: u64,
    ingested_total: u64,
    rejected: String,
    bounced: u64,
    paced: u64,
    echo_timeouts: u64,
    server_warnings: Vec<String>,
    unmatched: usize,
    outbox: OutboxTotals,
    meter_errors: usize,
    /// The reference bot's CPU (% of one core) and readings taken over the window.
    reference: Option<(f64, u64)>,
}

/// One moment's readings of the counters the window is measured between.
struct Snapshot {
    at: Instant,
    server_ticks: u64,
    own_ticks: u64,
    bot_ticks: u64,
    /// Messages and presences delivered so far; `None` if Prosody was too busy to answer.
    deliveries: Option<(u64, u64)>,
    sent: u64,
    ingested: u64,
    /// The reference bot's CPU ticks and readings taken so far.
    reference: Option<(u64, u64)>,
}

async fn drive(
    server: &Running,
    bot: BotConfig,
    meters: Vec<MeterConfig>,
    plan: &Plan,
    mut reference: Option<&mut ReferenceBot>,
) -> anyhow::Result<Figures> {
    let houses = meters.len();
    let tap = Arc::new(ReadingTap::default());
    let registry = Arc::new(Metrics::with_tap(tap.clone()));
    // The bot's tapped readings are collected at this pace, not one wake-up per reading.
    let mut tap_tick = tokio::time::interval(TAP_EVERY);
    let mut bot = bot;
    bot.registry = Some(registry.clone());
    let (stop_bot, stop_bot_rx) = watch::channel(false);
    let (bot_tx, mut bot_rx) = mpsc::unbounded_channel();
    let (bot_task, bot_task_dir) = spawn_bot_thread(bot, Some(bot_tx), stopped(stop_bot_rx))?;
    let bot_stat = bot_task_dir.join("stat").display().to_string();
    match bot_rx.recv().await {
        Some(BotEvent::Joined(_)) => eprintln!("bot joined"),
        _ => {
            return Err(bot_task
                .await?
                .err()
                .map_or_else(|| anyhow::anyhow!("bot stopped"), Into::into));
        }
    }

    let (stop, stop_rx) = watch::channel(false);
    let (meter_tx, mut meter_rx) = mpsc::unbounded_channel();
    let mut tasks: Vec<tokio::task::JoinHandle<Result<MeterReport, MeterError>>> =
        Vec::with_capacity(houses);
    let mut lat = Latency::default();
    let mut joined = 0usize;
    let ramp_bar = crate::progress::bar(
        u64::try_from(houses)?,
        "ramp [{bar:30}] {pos}/{len} joined ({elapsed})",
    )?;
    let ramp_started = Instant::now();
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    progress.tick().await;
    let mut spawn = tokio::time::interval(plan.ramp);
    // Falling behind must not turn into a burst of logins.
    spawn.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = meters.into_iter();
    // Ramp: spawn at the login rate, at most `max_logins` logging in at once, and wait until
    // every house is in the room (or nobody has joined for a minute).
    let quiet = Duration::from_secs(60);
    let mut ramp_deadline = Instant::now() + quiet;
    while joined < houses {
        let failed = tasks.iter().filter(|t| t.is_finished()).count();
        let logging_in = tasks.len().saturating_sub(joined + failed);
        let may_spawn = pending.len() > 0 && logging_in < plan.max_logins;
        tokio::select! {
            _ = spawn.tick(), if may_spawn => {
                if let Some(m) = pending.next() {
                    tasks.push(tokio::spawn(run_meter(m, Some(meter_tx.clone()), stopped(stop_rx.clone()))));
                }
            }
            Some(e) = meter_rx.recv() => {
                if matches!(e, MeterEvent::Joined(_)) {
                    joined += 1;
                    ramp_bar.inc(1);
                    ramp_deadline = Instant::now() + quiet;
                }
                lat.meter(e);
            }
            _ = tap_tick.tick() => lat.bot_all(&tap),
            () = tokio::time::sleep_until(ramp_deadline) => {
                ramp_bar.suspend(|| eprintln!("ramp: only {joined}/{houses} joined; measuring anyway"));
                break;
            }
        }
    }
    ramp_bar.finish_and_clear();
    let ramp = ramp_started.elapsed();
    if std::time::SystemTime::now() > plan.start {
        eprintln!(
            "ramp: readings started before every house had joined, so the figures include \
             logins under load; raise --start-after above {:.0} s to measure the steady state",
            ramp.as_secs_f64()
        );
    }
    eprintln!(
        "ramp: {joined}/{houses} joined in {:.1} s; measuring {:.0} s",
        ramp.as_secs_f64(),
        plan.window.as_secs_f64()
    );
    // Until the common start, then one interval so every meter is in its steady rhythm.
    let to_start = plan
        .start
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    settle(to_start + plan.interval, &mut meter_rx, &tap, &mut lat).await;

    let before = snapshot(server, &bot_stat, &lat, &registry, reference.as_deref_mut())?;
    lat.recording = true;
    let window_bar = crate::progress::bar(
        plan.window.as_secs(),
        "measuring [{bar:30}] {pos}/{len} s  {msg}",
    )?;
    let end = tokio::time::sleep(plan.window);
    tokio::pin!(end);
    loop {
        tokio::select! {
            () = &mut end => break,
            Some(e) = meter_rx.recv() => lat.meter(e),
            _ = tap_tick.tick() => lat.bot_all(&tap),
            _ = progress.tick() => {
                let t = before.at.elapsed().as_secs_f64();
                window_bar.set_position(before.at.elapsed().as_secs());
                window_bar.set_message(format!(
                    "sent {}  ingested {} ({:.0}/s)  p99 so far {:.1} ms",
                    lat.sent - before.sent,
                    registry.accepted() - before.ingested,
                    (registry.accepted() - before.ingested) as f64 / t.max(0.001),
                    lat.percentile_ms(0.99)
                ));
            }
        }
    }
    window_bar.finish_and_clear();
    let after = snapshot(server, &bot_stat, &lat, &registry, reference)?;
    lat.recording = false;

    stop.send(true)?;
    drop(meter_tx);
    let mut meter_errors = 0;
    let (mut bounced, mut paced, mut echo_timeouts) = (0, 0, 0);
    let mut outbox = OutboxTotals::default();
    for t in tasks {
        match t.await? {
            Ok(r) => {
                bounced += r.bounced;
                paced += r.paced;
                outbox.add(&r);
                echo_timeouts += r.echo_timeouts;
            }
            Err(e) => {
                meter_errors += 1;
                eprintln!("a meter stopped with an error: {e}");
            }
        }
    }
    // Everything sent has been sent; give the last readings time to land, then stop the bot.
    settle(
        plan.interval.max(Duration::from_secs(2)),
        &mut meter_rx,
        &tap,
        &mut lat,
    )
    .await;
    stop_bot.send(true)?;
    let report = bot_task.await??;
    while let Ok(e) = meter_rx.try_recv() {
        lat.meter(e);
    }
    lat.bot_all(&tap);

    let secs = (after.at - before.at).as_secs_f64();
    let cpu = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / secs * 100.0;
    let mut latencies_us = std::mem::take(&mut lat.latencies_us);
    latencies_us.sort_unstable();
    Ok(Figures {
        joined,
        ramp,
        window: after.at - before.at,
        sent_in_window: after.sent - before.sent,
        ingested_in_window: after.ingested - before.ingested,
        delivered: after
            .deliveries
            .zip(before.deliveries)
            .map(|((m1, p1), (m0, p0))| (m1 - m0, p1 - p0)),
        server_cpu: cpu(after.server_ticks - before.server_ticks),
        own_cpu: cpu(after.own_ticks - before.own_ticks),
        bot_cpu: cpu(after.bot_ticks - before.bot_ticks),
        latencies_us,
        sent_total: lat.sent,
        ingested_total: report.counters.accepted,
        rejected: report.counters.rejected.to_string(),
        bounced,
        paced,
        echo_timeouts,
        server_warnings: server
            .log_paths()
            .iter()
            .flat_map(|p| log_warnings(p))
            .collect(),
        unmatched: lat.sent_at.len(),
        meter_errors,
        outbox,
        reference: after
            .reference
            .zip(before.reference)
            .map(|((t1, n1), (t0, n0))| (cpu(t1 - t0), n1 - n0)),
    })
}

/// What the meters' outboxes did over the run: resends, and what never got acknowledged.
#[derive(Debug, Default)]
struct OutboxTotals {
    resent: u64,
    unacknowledged: u64,
    dropped: u64,
    expired: u64,
    acknowledged: u64,
    acks: u64,
    /// Readings taken but never handed to the server by the stop (queued behind a full
    /// in-flight window, or dropped or expired unsent): lost as surely as a dropped stanza.
    never_sent: u64,
}

impl OutboxTotals {
    fn add(&mut self, r: &MeterReport) {
        // Every reading taken ends acknowledged, refused, unacknowledged, dropped or expired.
        let taken = r.acknowledged
            + r.refused.values().sum::<u64>()
            + r.unacknowledged
            + r.dropped
            + r.expired;
        self.never_sent += taken.saturating_sub(r.sent);
        self.resent += r.resent;
        self.unacknowledged += r.unacknowledged;
        self.dropped += r.dropped;
        self.expired += r.expired;
        self.acknowledged += r.acknowledged;
        self.acks += r.acks;
    }
}

/// Keeps draining both channels for `d`.
async fn settle(
    d: Duration,
    meter_rx: &mut mpsc::UnboundedReceiver<MeterEvent>,
    tap: &ReadingTap,
    lat: &mut Latency,
) {
    let end = tokio::time::sleep(d);
    tokio::pin!(end);
    let mut tap_tick = tokio::time::interval(TAP_EVERY);
    loop {
        tokio::select! {
            () = &mut end => return lat.bot_all(tap),
            Some(e) = meter_rx.recv() => lat.meter(e),
            _ = tap_tick.tick() => lat.bot_all(tap),
        }
    }
}

fn snapshot(
    server: &Running,
    bot_stat: &str,
    lat: &Latency,
    registry: &Metrics,
    reference: Option<&mut ReferenceBot>,
) -> anyhow::Result<Snapshot> {
    let deliveries = match server.prosody() {
        None => None,
        Some(prosody) => read_deliveries(prosody)?,
    };
    Ok(Snapshot {
        at: Instant::now(),
        server_ticks: server_cpu_ticks(server)?,
        own_ticks: cpu_ticks("/proc/self/stat")?,
        bot_ticks: cpu_ticks(bot_stat)?,
        deliveries,
        sent: lat.sent,
        ingested: registry.accepted(),
        reference: match reference {
            Some(r) => Some((cpu_ticks(&r.stat)?, r.readings()?)),
            None => None,
        },
    })
}

/// Messages and presences Prosody delivered so far; `None` if its admin shell is too busy.
fn read_deliveries(prosody: &PrivateServer) -> anyhow::Result<Option<(u64, u64)>> {
    let deliveries = match tokio::task::block_in_place(|| prosody.admin_lua(READ_DELIVERIES_LUA)) {
        Ok(text) => {
            let mut counts = text
                .split_whitespace()
                .skip_while(|w| *w != "deliveries")
                .skip(1)
                .map(str::parse::<u64>);
            let (Some(Ok(messages)), Some(Ok(presences))) = (counts.next(), counts.next()) else {
                anyhow::bail!("unexpected delivery counter answer {text:?}");
            };
            Some((messages, presences))
        }
        Err(e) => {
            eprintln!("prosody's admin shell did not answer (overloaded?): {e}");
            None
        }
    };
    Ok(deliveries)
}

/// CPU ticks of every server process (each node of a cluster).
fn server_cpu_ticks(server: &Running) -> anyhow::Result<u64> {
    server
        .pids()
        .iter()
        .map(|pid| cpu_ticks(&format!("/proc/{pid}/stat")))
        .sum()
}

/// utime + stime of a process or thread, in clock ticks, from `/proc/<pid>/stat` or
/// `/proc/<pid>/task/<tid>/stat`.
fn cpu_ticks(path: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // Fields after the parenthesised command name: state is the 3rd field, utime the 14th.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path}: no command field"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path}: field {} missing", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// Matches each sent reading with the bot's receipt of it.
#[derive(Default)]
struct Latency {
    /// Only readings sent while recording count towards the latency figures.
    recording: bool,
    sent: u64,
    /// Send instants of readings not yet seen by the bot (`true` if sent while recording).
    sent_at: HashMap<(RoomNick, u64), (Instant, bool)>,
    /// Bot receipts that arrived on the channel before the meter's `Sent` event.
    early: HashMap<(RoomNick, u64), Instant>,
    latencies_us: Vec<u64>,
}

impl Latency {
    fn meter(&mut self, e: MeterEvent) {
        let MeterEvent::Sent { nick, reading, at } = e else {
            return;
        };
        self.sent += 1;
        let key = (nick, reading.seqnr);
        match self.early.remove(&key) {
            Some(got) => self.record(at, got, self.recording),
            None => {
                self.sent_at.insert(key, (at, self.recording));
            }
        }
    }

    fn bot_all(&mut self, tap: &ReadingTap) {
        for t in tap.drain() {
            self.bot(t);
        }
    }

    fn bot(&mut self, t: gridmuc_xmpp::metrics::TappedReading) {
        let key = (t.nick, t.seqnr);
        match self.sent_at.remove(&key) {
            Some((sent, in_window)) => self.record(sent, t.at, in_window),
            None => {
                self.early.insert(key, t.at);
            }
        }
    }

    fn record(&mut self, sent: Instant, got: Instant, in_window: bool) {
        if in_window {
            let us = got.saturating_duration_since(sent).as_micros();
            self.latencies_us
                .push(u64::try_from(us).unwrap_or(u64::MAX));
        }
    }

    fn percentile_ms(&self, q: f64) -> f64 {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        percentile(&v, q) as f64 / 1000.0
    }
}

/// The `q` quantile of sorted values (nearest rank); 0 when empty.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Figures {
    /// The bot thread's CPU time over the window per reading it ingested, in µs.
    fn bot_us_per_reading(&self) -> f64 {
        self.us_per_reading(self.bot_cpu, self.ingested_in_window)
    }

    /// CPU time per reading, from a CPU share (% of one core) over the window.
    fn us_per_reading(&self, cpu_percent: f64, readings: u64) -> f64 {
        let cpu_secs = cpu_percent / 100.0 * self.window.as_secs_f64();
        cpu_secs * 1e6 / (readings.max(1) as f64)
    }

    /// Readings sent but never accepted over the whole run (refused and late ones included),
    /// and readings taken but never sent.
    fn lost(&self) -> u64 {
        self.sent_total.saturating_sub(self.ingested_total) + self.outbox.never_sent
    }

    fn print(&self, args: &Args) {
        let secs = self.window.as_secs_f64();
        let ms = |q| percentile(&self.latencies_us, q) as f64 / 1000.0;
        println!("\n── loadtest result ──");
        println!(
            "houses joined: {}/{} (ramp {:.1} s)   meter errors: {}",
            self.joined,
            args.houses,
            self.ramp.as_secs_f64(),
            self.meter_errors
        );
        println!(
            "window {:.1} s: sent {} ({:.0}/s), ingested {} ({:.0} readings/s)",
            secs,
            self.sent_in_window,
            self.sent_in_window as f64 / secs,
            self.ingested_in_window,
            self.ingested_in_window as f64 / secs
        );
        match self.delivered {
            Some((m, p)) => println!(
                "server delivered to clients: {:.0} stanzas/s ({:.0} messages/s + {:.0} presences/s)",
                (m + p) as f64 / secs,
                m as f64 / secs,
                p as f64 / secs
            ),
            None => println!(
                "server delivered to clients: unknown (counted by Prosody's admin shell only)"
            ),
        }
        println!(
            "reading→bot latency over {} readings: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latencies_us.len(),
            ms(0.5),
            ms(0.99),
            ms(1.0)
        );
        println!(
            "CPU (% of one core): {} {:.0} %, gridmuc process (bot + {} meters) {:.0} %: \
             bot {:.1} % ({:.1} µs per ingested reading), meters {:.0} %",
            args.server.name(),
            self.server_cpu,
            self.joined,
            self.own_cpu,
            self.bot_cpu,
            self.bot_us_per_reading(),
            self.own_cpu - self.bot_cpu
        );
        if let Some((cpu, readings)) = self.reference {
            let theirs = self.us_per_reading(cpu, readings);
            println!(
                "reference bot (slixmpp, same room, same readings): {cpu:.1} % for {readings} \
                 readings, {theirs:.1} µs per reading: ours uses {:.1}× less CPU per reading",
                theirs / self.bot_us_per_reading().max(f64::MIN_POSITIVE)
            );
        }
        println!(
            "whole run: sent {}, ingested {}, lost {} (sent but not accepted or never sent; late ones included: {}), rejected: {}, bounced {}",
            self.sent_total,
            self.ingested_total,
            self.lost(),
            self.unmatched,
            self.rejected,
            self.bounced
        );
        let o = &self.outbox;
        println!(
            "meters' outboxes: resent {}, unacknowledged at stop {} ({} of them never sent), \
             dropped {}, expired {}; \
             {} readings acknowledged by {} acks",
            o.resent, o.unacknowledged, o.never_sent, o.dropped, o.expired, o.acknowledged, o.acks
        );
        if args.mode == Mode::Broadcast {
            println!(
                "broadcast pacing: {} intervals skipped waiting for the room's echo, {} echo timeouts",
                self.paced, self.echo_timeouts
            );
        }
        println!(
            "{} warnings/errors in its log: {}",
            args.server.name(),
            self.server_warnings.len()
        );
        for w in self.server_warnings.iter().take(5) {
            println!("  {w}");
        }
        let p99 = ms(0.99);
        println!(
            "RESULT server={} houses={} rate={} mode={:?} ingested_per_s={:.0} delivered_per_s={:.0} p50_ms={:.1} p99_ms={:.1} server_cpu={:.0} own_cpu={:.0} bot_cpu={:.1} bot_us_per_reading={:.1} sent={} ingested={} lost={} acks={}",
            args.server.name(),
            args.houses,
            args.rate,
            args.mode,
            self.ingested_in_window as f64 / secs,
            self.delivered
                .map_or(f64::NAN, |(m, p)| (m + p) as f64 / secs),
            ms(0.5),
            p99,
            self.server_cpu,
            self.own_cpu,
            self.bot_cpu,
            self.bot_us_per_reading(),
            self.sent_total,
            self.ingested_total,
            self.lost(),
            self.outbox.acks
        );
    }
}

/// The bot's outcome, from its own thread.
pub(crate) type BotOutcome = oneshot::Receiver<Result<BotReport, BotError>>;

/// Runs the bot on its own thread and runtime, as it would run in its own process, so the
/// meters' tasks (or a benchmark's feeder) cannot starve it; the answer arrives on the returned
/// channel. Everything the bot does (TLS, XML, tokio-xmpp, our decoding and acks) runs on that
/// one thread, so its CPU time, read from the returned `/proc/self/task/<tid>` directory
/// (`stat` in ticks, `schedstat` in nanoseconds), is the bot's alone.
pub(crate) fn spawn_bot_thread(
    bot: BotConfig,
    events: Option<mpsc::UnboundedSender<BotEvent>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(BotOutcome, std::path::PathBuf)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, rx) = oneshot::channel();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("bot".to_owned())
        .spawn(move || {
            // `/proc/thread-self` links to `<pid>/task/<tid>`.
            let _ = tid_tx.send(std::fs::read_link("/proc/thread-self"));
            let report = rt.block_on(run_bot(bot, events, stop));
            let _ = tx.send(report);
        })?;
    let task = tid_rx
        .recv()
        .context("the bot thread did not start")?
        .context("reading /proc/thread-self")?;
    let tid = task
        .file_name()
        .context("no thread id in /proc/thread-self")?;
    Ok((rx, std::path::Path::new("/proc/self/task").join(tid)))
}

/// Distinct warning and error lines of a Prosody or ejabberd log (a few lines into a run
/// are normal).
fn log_warnings(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut seen = Vec::new();
    for line in text.lines() {
        // Prosody: "time\tsession\twarn\tmessage"; ejabberd: "time [warning] <pid>@where message".
        let msg = if line.contains("\twarn\t") || line.contains("\terror\t") {
            // Drop the timestamp and session id so repeats collapse.
            line.split('\t').skip(2).collect::<Vec<_>>().join(" ")
        } else if let Some((_, rest)) = line
            .split_once(" [warning] ")
            .or_else(|| line.split_once(" [error] "))
        {
            rest.to_owned()
        } else {
            continue;
        };
        if !seen.contains(&msg) {
            seen.push(msg);
        }
    }
    seen
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_fails_naming_each_bound_it_missed() {
        let bounds = Bounds {
            max_p99_ms: 250.0,
            max_lost: 0,
        };
        assert!(bounds.missed(0, 1_000, 250.0).is_empty());
        let lost = bounds.missed(3, 1_000, 12.0);
        assert_eq!(lost.len(), 1);
        assert!(lost[0].contains("3 readings lost") && lost[0].contains("--max-lost 0"));
        let slow = bounds.missed(0, 1_000, 250.1);
        assert_eq!(slow.len(), 1);
        assert!(slow[0].contains("p99 latency 250.1 ms") && slow[0].contains("--max-p99-ms 250"));
        assert_eq!(bounds.missed(5, 1_000, 900.0).len(), 2);
        let empty = bounds.missed(0, 0, 0.0);
        assert!(empty.len() == 1 && empty[0].contains("no reading reached the bot"));
        let tolerant = Bounds {
            max_p99_ms: 1_000.0,
            max_lost: 5,
        };
        assert!(tolerant.missed(5, 10, 900.0).is_empty());
    }

    #[test]
    fn readings_queued_behind_a_full_window_count_as_never_sent() {
        let mut totals = OutboxTotals::default();
        // 40 taken: 20 sent and acknowledged, 4 sent and refused, 16 sent and unanswered,
        // and 300 more queued that never left the outbox.
        let report = MeterReport {
            sent: 40,
            acknowledged: 20,
            refused: [("late".to_owned(), 4)].into_iter().collect(),
            unacknowledged: 316,
            ..MeterReport::default()
        };
        totals.add(&report);
        assert_eq!(totals.never_sent, 300);
        // A meter that sent everything adds nothing.
        totals.add(&MeterReport {
            sent: 10,
            acknowledged: 9,
            unacknowledged: 1,
            ..MeterReport::default()
        });
        assert_eq!(totals.never_sent, 300);
    }

    #[test]
    fn percentile_takes_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(
            (
                percentile(&v, 0.5),
                percentile(&v, 0.99),
                percentile(&v, 1.0)
            ),
            (50, 99, 100)
        );
        assert_eq!(percentile(&[], 0.99), 0);
    }
}
