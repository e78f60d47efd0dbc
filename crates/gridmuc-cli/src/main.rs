//! `gridmuc`: one binary for the live neighbourhood, the offline simulations and the benchmarks.

mod bench_bot;
mod bench_ingest;
mod bench_private;
#[cfg(feature = "offline")]
mod bench_sim;
mod demo;
mod helper;
mod loadtest;
mod meter;
#[cfg(feature = "offline")]
mod privacy;
mod progress;
mod reference_bot;
#[cfg(feature = "offline")]
mod replay;
#[cfg(feature = "offline")]
mod report;
mod server;
mod shutdown;
#[cfg(feature = "offline")]
mod simulate;
mod substation;
mod target;
mod web;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: see the workspace's Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Anonymous smart-grid aggregation over XMPP multi-user chat.
#[derive(Parser)]
#[command(name = "gridmuc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Live demo: private Prosody, a neighbourhood of meters and the substation bot.
    Demo(demo::Args),
    /// Run one meter agent against any XMPP server from a TOML config.
    Meter(meter::Args),
    /// Run the substation operator bot against any XMPP server from a TOML config.
    Substation(substation::Args),
    /// Run private mode's helper bot (an independent party's) from a TOML config.
    Helper(helper::Args),
    /// Run an offline neighbourhood simulation from simulations/<name>.toml.
    #[cfg(feature = "offline")]
    Simulate(simulate::Args),
    /// Replay measured household traces through the aggregator with injected faults, or compare them with the simulator (--realism).
    #[cfg(feature = "offline")]
    Replay(replay::Args),
    /// Linkage experiment: link rotating nicknames to houses; what private mode leaves (reports/privacy).
    #[cfg(feature = "offline")]
    Privacy(privacy::Args),
    /// Re-render charts and report.md from a finished simulation's output.
    #[cfg(feature = "offline")]
    Report(report::Args),
    /// Run a private Prosody with accounts and a provisioned room until Ctrl-C.
    Server(server::Args),
    /// Load test: private Prosody, the real bot and N meters; throughput, latency, CPU, losses.
    Loadtest(loadtest::Args),
    /// Release-build benchmarks with a machine-readable last line.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Parse pre-built reading stanzas and feed the aggregator on one core.
    Ingest(bench_ingest::Args),
    /// The bot's CPU per reading over its whole live path, fed by a scripted server on loopback.
    Bot(bench_bot::Args),
    /// Simulate household-years and report the rate per CPU-second.
    #[cfg(feature = "offline")]
    Sim(bench_sim::Args),
    /// Private-mode (Prio3) costs per report for a meter and each aggregator, and bytes per report.
    Private(bench_private::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Scripts reading `substation --json` or `--quiet` want only errors on stderr.
    let level = match &cli.command {
        Command::Substation(a) => a.default_log_level(),
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    quiet_known_worker_panic();
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Meter(a) => meter::run(a),
        Command::Substation(a) => substation::run(a),
        Command::Helper(a) => helper::run(a),
        #[cfg(feature = "offline")]
        Command::Simulate(a) => simulate::run(a),
        #[cfg(feature = "offline")]
        Command::Report(a) => report::run(a),
        #[cfg(feature = "offline")]
        Command::Replay(a) => replay::run(a),
        #[cfg(feature = "offline")]
        Command::Privacy(a) => privacy::run(a),
        Command::Server(a) => server::run(a),
        Command::Loadtest(a) => loadtest::run(a),
        Command::Bench { which } => match which {
            BenchCommand::Ingest(a) => bench_ingest::run(a),
            BenchCommand::Bot(a) => bench_bot::run(a),
            #[cfg(feature = "offline")]
            BenchCommand::Sim(a) => bench_sim::run(a),
            BenchCommand::Private(a) => bench_private::run(a),
        },
    }
}

/// tokio-xmpp 6's background worker panics with "All clients have been dropped." when a
/// session is replaced or closed while it still has an event to hand over. The panic stays in
/// that worker's task and loses nothing of ours, but its backtrace alarms users: log it at
/// debug level and leave every other panic to the default hook.
fn quiet_known_worker_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        let known = message.is_some_and(|m| m.contains("All clients have been dropped"))
            && info
                .location()
                .is_some_and(|l| l.file().contains("tokio-xmpp"));
        if known {
            tracing::debug!("tokio-xmpp worker stopped after its client was dropped");
        } else {
            default(info);
        }
    }));
}
