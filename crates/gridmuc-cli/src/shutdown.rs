//! When a long-running command stops: on SIGINT (Ctrl-C) and on SIGTERM alike, because
//! systemd, `docker stop`, Kubernetes and `kill` send SIGTERM, which killed a meter before it
//! asked the bot for the verdicts it held (its last readings lost) and `gridmuc server` before
//! it deleted its directory (the bot's secret key and every password left behind). A second
//! signal during the clean stop ends the process at once.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Which signal asked us to stop, for the message and the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT: Ctrl-C on a terminal.
    Interrupt,
    /// SIGTERM: a service manager, a container runtime, `kill`.
    Terminate,
}

impl Stop {
    /// The shell's exit status for a process a signal ended (128 + its number).
    fn exit_status(self) -> i32 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM, so the caller can stop cleanly; from then on a
/// second one exits the process at once (for a clean stop that waits on a dead server).
/// Call it inside the runtime that drives the agent: the second-signal watch is a task on it.
pub async fn requested() -> Stop {
    let first = next_signal().await;
    tracing::info!(signal = ?first, "stopping cleanly; a second signal stops at once");
    tokio::spawn(async {
        let second = next_signal().await;
        eprintln!("{second:?} during the clean stop: stopping at once");
        std::process::exit(second.exit_status());
    });
    first
}

/// The next SIGINT or SIGTERM. If a handler cannot be installed (never seen on Linux), the
/// other one still works, and the failure is logged instead of ending the process.
async fn next_signal() -> Stop {
    let mut interrupt = signal(SignalKind::interrupt())
        .inspect_err(|e| tracing::warn!("cannot watch SIGINT: {e}"))
        .ok();
    let mut terminate = signal(SignalKind::terminate())
        .inspect_err(|e| tracing::warn!("cannot watch SIGTERM: {e}"))
        .ok();
    tokio::select! {
        () = recv(&mut interrupt) => Stop::Interrupt,
        () = recv(&mut terminate) => Stop::Terminate,
    }
}

/// One delivery of a watched signal; never resolves for a signal that could not be watched.
async fn recv(watch: &mut Option<Signal>) {
    if let Some(s) = watch
        && s.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}
