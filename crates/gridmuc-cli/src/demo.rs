//! `gridmuc demo`: a private Prosody, a neighbourhood of meters, the substation bot and an
//! operator, with a staged single-house spike and a transformer overload, all on loopback.
//! `--mode private` runs private mode (Prio3) instead: the bot as leader with an independent
//! helper bot; nobody sees a house's reading, the staged spike is only counted and told to its
//! house privately.

mod private;

use crate::target::{Running, Target};
use anyhow::Context;
use gridmuc_core::{AggregatorConfig, Alert, AlertKind, Watts};
use gridmuc_server::{RoomPolicy, generate_password};
use gridmuc_xmpp::bot::{BotConfig, BotEvent, run_bot, summary_line};
use gridmuc_xmpp::connect::ConnectConfig;
use gridmuc_xmpp::listen::{Heard, ListenPlan, listen};
use gridmuc_xmpp::meter::{MeterConfig, MeterEvent, Mode, run_meter};
use gridmuc_xmpp::source::Injection;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// Number of houses (meter agents).
    #[arg(long, default_value_t = 50)]
    pub houses: usize,
    /// How long the neighbourhood runs.
    #[arg(long, default_value_t = 2.0)]
    pub minutes: f64,
    /// `private` (Prio3 with a helper bot: nobody sees a reading; the default), `direct`
    /// (readings sealed privately to the bot through the room) or `broadcast` (to the room).
    #[arg(long, default_value = "private")]
    pub mode: DemoMode,
    /// Reporting interval in seconds (short, so a two-minute demo shows many intervals).
    #[arg(long, default_value_t = 5.0)]
    pub interval: f64,
    /// The server: `prosody`, `ejabberd`, or `ejabberd-cluster` (houses on node 0; the
    /// bots, the operator and the room on node 1).
    #[arg(long, value_enum, default_value = "prosody")]
    pub server: Target,
}

/// How the demo's meters report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoMode {
    /// Plain readings, direct or broadcast.
    Plain(Mode),
    /// Private mode: Prio3 reports to the leader and a helper bot.
    Private,
}

impl FromStr for DemoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<DemoMode, String> {
        match s {
            "private" => Ok(DemoMode::Private),
            other => Mode::from_str(other)
                .map(DemoMode::Plain)
                .map_err(|_| format!("unknown mode {other:?} (direct, broadcast or private)")),
        }
    }
}

/// The substation's nickname in the room.
const BOT_NICK: &str = "substation";
/// Private mode's helper bot's nickname (and account).
const HELPER_NICK: &str = "helper";
/// Transformer rating per house: normal evenings stay under it, the staged overload does not.
const RATING_PER_HOUSE: i64 = 3_000;
/// Extra load per house during the staged overload ("every EV plugs in at once").
const OVERLOAD_ADD: i64 = 3_500;
/// How much faster than a real one the demo's transformer heats.
const DEMO_THERMAL_SPEEDUP: f64 = 720.0;
/// Extra load of the one spiking house.
const SPIKE_ADD: i64 = 15_000;

/// Runs the demo and prints the live view and a summary.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.houses >= 5,
        "the peer comparison needs at least 5 houses"
    );
    let interval = Duration::try_from_secs_f64(args.interval).context("--interval")?;
    let run_for = Duration::try_from_secs_f64(args.minutes * 60.0).context("--minutes")?;
    anyhow::ensure!(run_for >= interval * 6, "run at least six intervals");

    eprintln!("starting a private {} on loopback …", args.server.name());
    // XEP-0198 off: with it, tokio-xmpp 6 sessions under groupchat fan-out (broadcast mode,
    // 50 houses) delivered stanzas in bursts seconds late (420 of 944 readings arrived after
    // their interval closed); without it every reading arrived on time. DESIGN.md also
    // measured fan-out ~6x slower with smacks. The demo never needs session resumption.
    // The live page is served by Prosody, joining the room anonymously over its websocket.
    let server = Running::start(args.server, false, Some(crate::web::page()))?;
    let mut accounts: Vec<(String, String)> = ["substation", "operator", "watcher"]
        .iter()
        .map(|u| ((*u).to_owned(), generate_password()))
        .collect();
    accounts.extend((0..args.houses).map(|i| (format!("house{i}"), generate_password())));
    accounts.push(("helper".to_owned(), generate_password()));
    server.register_many(&accounts)?;
    let policy = RoomPolicy {
        reserved_nicks: [BOT_NICK, HELPER_NICK]
            .map(|b| (format!("{b}@{}", server.domain()), b.to_owned()))
            .to_vec(),
        ..RoomPolicy::default()
    };
    let room = server.provision_room("neighbourhood", &policy)?;
    // The bot signs its verdicts and posts; meters pin its public key and seal readings to it.
    let key = std::sync::Arc::new(gridmuc_botkey::BotSecretKey::generate(&mut rand::rng()));
    // Accounts 3 … 3+houses-1 are the houses'; the rest are the bots' and people's.
    let account = |i: usize| {
        let (user, password) = &accounts[i];
        let addr = if (3..3 + args.houses).contains(&i) {
            server.meter_addr()
        } else {
            server.bot_addr()
        };
        ConnectConfig::private_tls(
            &format!("{user}@{}", server.domain()),
            password,
            &addr.to_string(),
            server.ca_cert_pem(),
        )
    };
    println!(
        "room {room} on {} (CA {}); watch with any XMPP client as watcher@{} / {}",
        server.bot_addr(),
        server.ca_cert_path().display(),
        server.domain(),
        accounts[2].1
    );
    if let Some(url) = server.page_url(&room) {
        println!("live page: {url}");
    }

    let mut bot = BotConfig::new(account(0), &room);
    bot.nick = BOT_NICK.to_owned();
    bot.key = Some(key.clone());
    bot.operators = vec![format!("operator@{}", server.domain())];
    let interval_ms = i64::try_from(interval.as_millis()).context("--interval")?;
    bot.aggregator = AggregatorConfig {
        interval: interval_ms,
        grace: (interval_ms / 5).max(500),
        ..AggregatorConfig::default()
    };
    let houses = i64::try_from(args.houses).context("--houses")?;
    bot.aggregator.overload.rating = Watts(RATING_PER_HOUSE * houses);
    // The overload detector follows the transformer's temperature (IEC 60076-7), which takes
    // hours to rise: the demo's transformer heats 720 times faster (oil 15 s, winding 0.3 s),
    // so its 24-second staged overload shows what hours of overload would.
    bot.aggregator.overload.thermal =
        gridmuc_core::thermal::ThermalConfig::default().faster(DEMO_THERMAL_SPEEDUP);

    let window = |from: f64, to: f64, add: i64| Injection {
        from: run_for.mul_f64(from),
        to: run_for.mul_f64(to),
        add,
    };
    let mode = match args.mode {
        DemoMode::Plain(mode) => mode,
        DemoMode::Private => Mode::Direct,
    };
    let meters: Vec<MeterConfig> = (0..args.houses)
        .map(|i| {
            let mut m = MeterConfig::new(account(3 + i), &room);
            m.mode = mode;
            m.bot_nick = BOT_NICK.to_owned();
            m.bot_key = Some(key.public());
            m.interval = interval;
            // Several rotations per house in a two-minute demo.
            m.rotate = [8.0 * args.interval, 16.0 * args.interval];
            m.rejoin_gap = [0.5, 2.0];
            m.injections = vec![window(0.6, 0.8, OVERLOAD_ADD)];
            if i == 0 {
                m.injections.push(window(0.3, 0.45, SPIKE_ADD));
            }
            m
        })
        .collect();
    let operator = account(1);
    let rt = tokio::runtime::Runtime::new()?;
    let result = if args.mode == DemoMode::Private {
        let helper_key =
            std::sync::Arc::new(gridmuc_botkey::BotSecretKey::generate(&mut rand::rng()));
        let mut settings = gridmuc_xmpp::private::PrivateSettings::new(helper_key.public());
        // A small demo street still publishes: the helper's floor is at most half the houses.
        let half = u32::try_from(args.houses / 2).unwrap_or(u32::MAX).max(2);
        settings.min_reports = settings.min_reports.min(half);
        let task = settings.task(&room, bot.aggregator.interval, key.public())?;
        let mut helper = gridmuc_xmpp::private::HelperBotConfig::new(
            account(3 + args.houses),
            &room,
            bot.aggregator.interval,
            key.public(),
            settings.clone(),
        );
        helper.key = Some(helper_key);
        helper.operators = vec![format!("operator@{}", server.domain())];
        let meters = meters
            .into_iter()
            .map(|mut m| {
                m.private = Some(settings.clone());
                m
            })
            .collect();
        bot.private = Some(settings);
        println!(
            "{} houses, private mode (Prio3: leader {BOT_NICK}, helper {HELPER_NICK}), {}-s intervals, rating {}; staged: one-house spike at 30–45 %, overload at 60–80 % of {:.1} min",
            args.houses, args.interval, bot.aggregator.overload.rating, args.minutes
        );
        rt.block_on(private::neighbourhood(
            bot, helper, meters, operator, run_for, task,
        ))
    } else {
        println!(
            "{} houses, {:?} mode, {}-s intervals, rating {}; staged: one-house spike at 30–45 %, overload at 60–80 % of {:.1} min",
            args.houses, mode, args.interval, bot.aggregator.overload.rating, args.minutes
        );
        rt.block_on(neighbourhood(bot, meters, operator, run_for))
    };
    server.stop()?;
    result
}

/// Totals the live view keeps.
#[derive(Default)]
struct Tally {
    sent: u64,
    joins: u64,
    spike_pms: u64,
    alerts: BTreeMap<&'static str, u64>,
    latencies: Vec<i64>,
    operator_alerts: u64,
}

async fn neighbourhood(
    bot: BotConfig,
    meters: Vec<MeterConfig>,
    operator: ConnectConfig,
    run_for: Duration,
) -> anyhow::Result<()> {
    let grace = bot.aggregator.grace;
    let interval = Duration::from_millis(bot.aggregator.interval.unsigned_abs());
    let mut tally = Tally::default();
    let agents = Agents {
        interval,
        run_for,
        // Let the last readings land, then close the open intervals.
        settle: Duration::from_millis(500),
    };
    let (report, reports) = agents
        .drive(
            &mut tally,
            bot,
            |c, tx, stop| run_bot(c, Some(tx), stop),
            |e| match e {
                BotEvent::Joined(nick) => Some(format!("{nick} (plain participant)")),
                _ => None,
            },
            meters,
            |c, tx, stop| run_meter(c, Some(tx), stop),
            operator,
        )
        .await?;

    let sent: u64 = reports.iter().map(|r| r.sent).sum();
    let unacked: u64 = reports.iter().map(|r| r.unacknowledged).sum();
    let resent: u64 = reports.iter().map(|r| r.resent).sum();
    let nicks: u64 = reports.iter().map(|r| r.nicks).sum();
    let c = &report.counters;
    let lat = &mut tally.latencies;
    lat.sort_unstable();
    println!("\n── summary ──");
    println!("houses finished cleanly: {}", reports.len());
    println!(
        "readings sent: {sent}   ingested by the bot: {}   rejected: {}   resent: {resent}   \
         unacknowledged at stop: {unacked}",
        c.accepted,
        c.rejected.total()
    );
    println!(
        "intervals closed: {}   nicknames used: {nicks} (rotations by leave + rejoin)",
        c.intervals
    );
    println!(
        "alerts: {}   house-spike PMs received by the offending nickname: {}   operator DMs: {}",
        if tally.alerts.is_empty() {
            "none".to_owned()
        } else {
            format!("{:?}", tally.alerts)
        },
        tally.spike_pms,
        tally.operator_alerts
    );
    if let (Some(min), Some(max)) = (lat.first(), lat.last()) {
        println!(
            "summary posted after interval end: min {min} ms, median {} ms, max {max} ms (includes the {grace} ms grace)",
            lat[lat.len() / 2],
        );
    }
    if sent != c.accepted {
        println!(
            "WARNING: {} readings sent but not ingested",
            sent.saturating_sub(c.accepted)
        );
    }
    Ok(())
}

fn on_bot_event(e: BotEvent, tally: &mut Tally, on_time: bool) {
    match e {
        BotEvent::Summary {
            stats,
            closed_at,
            counters,
        } => {
            let latency = closed_at.since(stats.start.plus(stats.length));
            if on_time {
                tally.latencies.push(latency);
            }
            let late = if on_time {
                format!(" | +{latency} ms")
            } else {
                String::new()
            };
            println!(
                "{}  | sent {} ingested {}{late}",
                summary_line(&stats),
                tally.sent,
                counters.accepted
            );
        }
        BotEvent::Alert(a) => {
            *tally.alerts.entry(a.kind.as_str()).or_default() += 1;
            println!("  ALERT {}", where_to(&a));
        }
        // The summary at the end counts refusals; a line each would drown the view.
        BotEvent::Joined(_) | BotEvent::Stanza(_) | BotEvent::Refused(_) => {}
    }
}

fn where_to(a: &Alert) -> String {
    match a.kind {
        AlertKind::HouseSpike => format!("{} (private to that nickname + operator)", a.body()),
        _ => format!("{} (room + operator)", a.body()),
    }
}

fn on_operator(heard: &Heard, tally: &mut Tally) {
    if heard.alert.is_some() {
        tally.operator_alerts += 1;
    }
    println!("  operator inbox: {}", heard.body);
}

fn on_meter_event(e: MeterEvent, tally: &mut Tally) {
    match e {
        MeterEvent::Sent { .. } => tally.sent += 1,
        MeterEvent::Joined(_) => tally.joins += 1,
        MeterEvent::Private {
            to, alert: Some(a), ..
        } if a.kind == AlertKind::HouseSpike => {
            tally.spike_pms += 1;
            println!("  {to} got a private alert: {}", a.body());
        }
        MeterEvent::Bounced(why) => println!("  a direct reading bounced: {why}"),
        _ => {}
    }
}

/// What the live view does with the events of a run, whatever the mode.
trait View<B, M> {
    /// A bot event; `on_time` is false for the final flush at shutdown.
    fn bot(&mut self, e: B, on_time: bool);
    /// A meter event.
    fn meter(&mut self, e: M);
    /// A message in the operator's inbox.
    fn operator(&mut self, heard: &Heard);
}

impl View<BotEvent, MeterEvent> for Tally {
    fn bot(&mut self, e: BotEvent, on_time: bool) {
        on_bot_event(e, self, on_time);
    }
    fn meter(&mut self, e: MeterEvent) {
        on_meter_event(e, self);
    }
    fn operator(&mut self, heard: &Heard) {
        on_operator(heard, self);
    }
}

/// A shutdown signal as the bot and meter loops take it.
type Stop = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The timing of one demo run.
struct Agents {
    interval: Duration,
    run_for: Duration,
    /// Wait between stopping the meters and stopping the bot.
    settle: Duration,
}

impl Agents {
    /// Runs the bot, the operator's inbox and the meters (logins spread over one interval) for
    /// `run_for`, feeding every event to `view`; returns the bot's and the meters' reports.
    #[allow(clippy::too_many_arguments)]
    async fn drive<V, BC, BE, BR, BErr, BF, MC, ME, MR, MErr, MF>(
        &self,
        view: &mut V,
        bot: BC,
        run_bot: impl FnOnce(BC, mpsc::UnboundedSender<BE>, Stop) -> BF,
        joined: impl Fn(&BE) -> Option<String>,
        meters: Vec<MC>,
        run_meter: impl Fn(MC, mpsc::UnboundedSender<ME>, Stop) -> MF,
        operator: ConnectConfig,
    ) -> anyhow::Result<(BR, Vec<MR>)>
    where
        V: View<BE, ME>,
        BE: Send + 'static,
        ME: Send + 'static,
        BR: Send + 'static,
        MR: Send + 'static,
        BErr: Into<anyhow::Error> + Send + 'static,
        MErr: std::fmt::Display + Send + 'static,
        BF: Future<Output = Result<BR, BErr>> + Send + 'static,
        MF: Future<Output = Result<MR, MErr>> + Send + 'static,
    {
        let stop_signal = |rx: &watch::Receiver<bool>| -> Stop { Box::pin(stopped(rx.clone())) };
        let (stop_bot, stop_bot_rx) = watch::channel(false);
        let (bot_tx, mut bot_rx) = mpsc::unbounded_channel();
        let bot_task = tokio::spawn(run_bot(bot, bot_tx, stop_signal(&stop_bot_rx)));
        match bot_rx.recv().await.as_ref().and_then(&joined) {
            Some(who) => println!("substation joined as {who}"),
            None => {
                return Err(match bot_task.await? {
                    Err(e) => e.into(),
                    Ok(_) => anyhow::anyhow!("bot stopped"),
                });
            }
        }
        let (op_tx, mut op_rx) = mpsc::unbounded_channel();
        let op_task = tokio::spawn(listen(
            operator,
            ListenPlan::default(),
            op_tx,
            stop_signal(&stop_bot_rx),
        ));
        let (stop, stop_rx) = watch::channel(false);
        let (meter_tx, mut meter_rx) = mpsc::unbounded_channel();
        let stagger = self.interval.div_f64(meters.len().max(1) as f64);
        let mut tasks = Vec::new();
        for m in meters {
            tasks.push(tokio::spawn(run_meter(
                m,
                meter_tx.clone(),
                stop_signal(&stop_rx),
            )));
            // Spread the logins over one interval rather than 50 SCRAM handshakes at once.
            tokio::time::sleep(stagger).await;
        }
        drop(meter_tx);

        let end = tokio::time::sleep(self.run_for.saturating_sub(self.interval));
        tokio::pin!(end);
        // Ctrl-C or SIGTERM ends the run early but cleanly: meters stop first, the summary is
        // printed and the server's directory deleted, as at the planned end.
        let signalled = crate::shutdown::requested();
        tokio::pin!(signalled);
        loop {
            tokio::select! {
                () = &mut end => break,
                signal = &mut signalled => {
                    println!("\n{signal:?}: stopping the neighbourhood early, cleanly");
                    break;
                }
                Some(e) = bot_rx.recv() => view.bot(e, true),
                Some(e) = meter_rx.recv() => view.meter(e),
                Some(heard) = op_rx.recv() => view.operator(&heard),
            }
        }
        stop.send(true)?;
        let mut reports = Vec::new();
        for t in tasks {
            match t.await? {
                Ok(r) => reports.push(r),
                Err(e) => eprintln!("a meter stopped with an error: {e}"),
            }
        }
        while let Ok(e) = meter_rx.try_recv() {
            view.meter(e);
        }
        tokio::time::sleep(self.settle).await;
        stop_bot.send(true)?;
        let report = bot_task.await?.map_err(Into::into)?;
        // These include the final flush, which closes the last interval early: no latency figures.
        while let Ok(e) = bot_rx.try_recv() {
            view.bot(e, false);
        }
        let _ = op_task.await;
        while let Ok(heard) = op_rx.try_recv() {
            view.operator(&heard);
        }
        Ok((report, reports))
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
