//! `gridmuc demo --mode private`: the substation bot as Prio3 leader, an independent helper
//! bot and the meters; the demo, which plays every house, checks each published interval
//! (count, total and histogram) against what the houses reported.

use super::{Agents, View};
use crate::demo::where_to;
use crate::substation::leader_line;
use gridmuc_core::{Alert, Millis};
use gridmuc_private::{IntervalResult, PrivateConfig};
use gridmuc_xmpp::bot::BotConfig;
use gridmuc_xmpp::connect::ConnectConfig;
use gridmuc_xmpp::listen::Heard;
use gridmuc_xmpp::meter::MeterConfig;
use gridmuc_xmpp::private::{
    HelperBotConfig, HelperEvent, LeaderEvent, PrivateMeterEvent, run_helper, run_leader,
    run_private_meter,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What the private live view keeps.
struct PrivateTally {
    task: PrivateConfig,
    /// The interval's length, for the console lines.
    length: Millis,
    /// Per interval: the quantised readings the houses sent (only the demo knows them).
    sent: BTreeMap<u64, Vec<u32>>,
    published: Vec<IntervalResult>,
    skipped: u64,
    lost: u64,
    refused: u64,
    notices: u64,
    spikes_announced: u64,
    alerts: BTreeMap<&'static str, u64>,
    operator_alerts: u64,
}

impl PrivateTally {
    /// Whether a published interval holds exactly what the houses sent for it.
    fn exact(&self, r: &IntervalResult) -> bool {
        let Some(sent) = self.sent.get(&r.interval) else {
            return false;
        };
        let mut histogram = vec![0u64; r.histogram.len()];
        for &w in sent {
            histogram[self.task.bucket_of(w)] += 1;
        }
        let total: u64 = sent.iter().map(|&w| u64::from(w)).sum();
        (r.reports, r.total_watts, &r.histogram) == (sent.len() as u64, total, &histogram)
    }
}

impl View<LeaderEvent, PrivateMeterEvent> for PrivateTally {
    fn bot(&mut self, e: LeaderEvent, _on_time: bool) {
        // The lines `gridmuc substation` prints in private mode, and the demo's own check.
        let line = leader_line(&e, self.length).unwrap_or_default();
        match e {
            LeaderEvent::Interval { result, spike, .. } => {
                let check = if self.exact(&result) {
                    "= houses"
                } else {
                    "≠ houses!"
                };
                self.spikes_announced += u64::from(spike.is_some_and(|s| s.reports > 0));
                println!("{line}  [{check}]");
                self.published.push(result);
            }
            LeaderEvent::Skipped { .. } => {
                self.skipped += 1;
                println!("{line}");
            }
            LeaderEvent::Lost { .. } => {
                self.lost += 1;
                println!("{line}");
            }
            LeaderEvent::Refused { .. } => {
                self.refused += 1;
                println!("  {line}");
            }
            LeaderEvent::Alert(a) => self.alert(&a),
            LeaderEvent::Joined { .. } | LeaderEvent::Unverified { .. } => {}
        }
    }

    fn meter(&mut self, e: PrivateMeterEvent) {
        match e {
            PrivateMeterEvent::Sent {
                interval, watts, ..
            } => {
                self.sent.entry(interval).or_default().push(watts);
            }
            PrivateMeterEvent::HouseAbove {
                interval,
                reading_watts,
                threshold_watts,
                houses,
            } => {
                self.notices += 1;
                println!(
                    "  a house learns, privately, that its {:.1} kW is at or above {:.1} kW in interval {interval} ({houses} houses are)",
                    f64::from(reading_watts) / 1e3,
                    f64::from(threshold_watts) / 1e3
                );
            }
            _ => {}
        }
    }

    fn operator(&mut self, heard: &Heard) {
        self.operator_alerts += u64::from(heard.alert.is_some());
        println!("  operator inbox: {}", heard.body);
    }
}

impl PrivateTally {
    fn alert(&mut self, a: &Alert) {
        *self.alerts.entry(a.kind.as_str()).or_default() += 1;
        println!("  ALERT {}", where_to(a));
    }
}

/// Runs the helper, then the leader, the operator's inbox and the meters.
pub(super) async fn neighbourhood(
    leader: BotConfig,
    helper: HelperBotConfig,
    meters: Vec<MeterConfig>,
    operator: ConnectConfig,
    run_for: Duration,
    task: PrivateConfig,
) -> anyhow::Result<()> {
    let interval = Duration::from_millis(leader.aggregator.interval.unsigned_abs());
    let (stop_helper, stop_rx) = watch::channel(false);
    let (helper_tx, mut helper_rx) = mpsc::unbounded_channel();
    let helper_task = tokio::spawn(run_helper(helper, Some(helper_tx), async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    }));
    match helper_rx.recv().await {
        Some(HelperEvent::Joined(nick)) => println!("helper joined as {nick} (plain participant)"),
        _ => {
            return Err(match helper_task.await? {
                Err(e) => e.into(),
                Ok(_) => anyhow::anyhow!("helper stopped"),
            });
        }
    }
    let mut tally = PrivateTally {
        task,
        length: leader.aggregator.interval,
        sent: BTreeMap::new(),
        published: Vec::new(),
        skipped: 0,
        lost: 0,
        refused: 0,
        notices: 0,
        spikes_announced: 0,
        alerts: BTreeMap::new(),
        operator_alerts: 0,
    };
    let agents = Agents {
        interval,
        run_for,
        // Let the last reports land and their interval be collected.
        settle: interval * 2,
    };
    let (refusals, reports) = agents
        .drive(
            &mut tally,
            leader,
            |c, tx, stop| run_leader(c, Some(tx), stop),
            |e| match e {
                LeaderEvent::Joined { nick, .. } => {
                    Some(format!("{nick} (plain participant, Prio3 leader)"))
                }
                _ => None,
            },
            meters,
            |c, tx, stop| run_private_meter(c, Some(tx), stop),
            operator,
        )
        .await?;
    stop_helper.send(true)?;
    let helper_refusals = helper_task.await??;
    while let Ok(e) = helper_rx.try_recv() {
        if let HelperEvent::Alarm {
            interval,
            reports,
            typical,
        } = e
        {
            println!(
                "  helper alarm: interval {interval} has {reports} reports, usually {typical}"
            );
        }
    }

    let sent: u64 = reports.iter().map(|r| r.sent).sum();
    let published: u64 = reports.iter().map(|r| r.published).sum();
    let nicks: u64 = reports.iter().map(|r| r.nicks).sum();
    let exact = tally.published.iter().filter(|r| tally.exact(r)).count();
    println!("\n── summary (private mode: no one saw a house's reading) ──");
    println!("houses finished cleanly: {}", reports.len());
    println!(
        "reports sent: {sent}   counted in published intervals: {published}   refused by the leader: {}   by the helper: {}",
        refusals.total(),
        helper_refusals.total()
    );
    println!(
        "intervals published: {}   equal to what the houses sent (count, total, histogram; checked by the demo, which plays every house): {exact}   below the minimum: {}   lost: {}",
        tally.published.len(),
        tally.skipped,
        tally.lost
    );
    println!(
        "nicknames used: {nicks}   house-spike counts announced: {}   private notices to houses: {}",
        tally.spikes_announced, tally.notices
    );
    println!(
        "alerts: {}   operator DMs: {}",
        if tally.alerts.is_empty() {
            "none".to_owned()
        } else {
            format!("{:?}", tally.alerts)
        },
        tally.operator_alerts
    );
    if exact != tally.published.len() {
        println!(
            "WARNING: {} published intervals differ from what the houses sent",
            tally.published.len() - exact
        );
    }
    Ok(())
}
