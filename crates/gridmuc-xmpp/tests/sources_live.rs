//! Real meter sources in a live neighbourhood: a DSMR P1 telegram stream (through a TCP
//! bridge) and a Tasmota device on a private Mosquitto feed two meters on the private Prosody,
//! and every interval both report, the bot's total is the sum of what they measured.

#![allow(clippy::unwrap_used)]

use gridmuc_core::{AggregatorConfig, Watts};
use gridmuc_server::{RoomPolicy, ServerConfig};
use gridmuc_source::{Link, dsmr, mqtt::Preset};
use gridmuc_xmpp::bot::{BotConfig, BotEvent, run_bot};
use gridmuc_xmpp::meter::{MeterConfig, Mode, run_meter};
use gridmuc_xmpp::source::SourceConfig;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

#[path = "../../../tests/common/mod.rs"]
mod common;
use common::{TestServer, runtime, stopped, users};

#[path = "../../gridmuc-source/tests/common/mod.rs"]
mod sources;
use sources::Mosquitto;

const P1_WATTS: i64 = 1_530;
const TASMOTA_WATTS: i64 = 740;

#[test]
fn a_dsmr_meter_and_an_mqtt_device_report_what_they_measured() {
    let TestServer { server, room } = TestServer::start(
        ServerConfig::default(),
        &users(&["bot"], 2),
        &RoomPolicy::default(),
    );
    let broker = Mosquitto::start("allow_anonymous true");
    let rt = runtime();
    let (summaries, meters) = rt.block_on(async {
        // The P1 bridge (as ser2net would be) sends a telegram every 100 ms.
        let bridge = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bridge_addr = bridge.local_addr().unwrap();
        let telegram = dsmr::seal(&format!(
            "/ISK5\\2M550T-1012\n\n1-0:1.8.1(001234.567*kWh)\n1-0:1.8.2(002345.678*kWh)\n1-0:2.8.1(000000.000*kWh)\n1-0:2.8.2(000000.000*kWh)\n1-0:1.7.0(01.{:03}*kW)\n1-0:2.7.0(00.000*kW)\n!",
            P1_WATTS - 1_000
        ));
        let p1 = tokio::spawn(async move {
            let (mut s, _) = bridge.accept().await.unwrap();
            loop {
                if s.write_all(telegram.as_bytes()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        // The Tasmota plug publishes its telemetry every 100 ms.
        let device = broker.device();
        let plug = tokio::spawn(async move {
            let payload = format!(r#"{{"ENERGY":{{"Total":12.345,"Power":{TASMOTA_WATTS}}}}}"#);
            loop {
                let _ = device.publish("tele/plug/SENSOR", rumqttc::QoS::AtMostOnce, false, payload.clone().into_bytes()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });

        let account = |u: &str| common::account(&server, u, Duration::from_secs(10));
        let mut bot = BotConfig::new(account("bot"), &room);
        bot.aggregator = AggregatorConfig { interval: 1_000, grace: 500, ..AggregatorConfig::default() };
        let meter = |house: usize, source: SourceConfig| {
            let mut m = MeterConfig::new(account(&format!("house{house}")), &room);
            m.mode = Mode::Direct;
            m.interval = Duration::from_secs(1);
            m.jitter = [0.05, 0.4];
            m.source = source;
            m
        };
        let dsmr_meter = meter(0, SourceConfig::Dsmr(Link { tcp: Some(bridge_addr.to_string()), ..Link::default() }));
        let mqtt_meter = meter(1, SourceConfig::Mqtt(broker.config(Preset::Tasmota, None)));

        let (stop_tx, stop_rx) = watch::channel(false);
        let (stop_bot_tx, stop_bot_rx) = watch::channel(false);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let bot = tokio::spawn(run_bot(bot, Some(tx), stopped(stop_bot_rx)));
        let meters: Vec<_> = [dsmr_meter, mqtt_meter]
            .into_iter()
            .map(|m| tokio::spawn(run_meter(m, None, stopped(stop_rx.clone()))))
            .collect();
        // Run until the bot has closed five intervals in which both houses reported.
        let mut summaries = Vec::new();
        while summaries.iter().filter(|(meters, _)| *meters == 2).count() < 5 {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(BotEvent::Summary { stats, .. })) => summaries.push((stats.meters, stats.total)),
                Ok(Some(_)) => {}
                other => panic!("bot stopped summarising: {other:?} after {summaries:?}"),
            }
        }
        stop_tx.send(true).unwrap();
        let mut reports = Vec::new();
        for m in meters {
            reports.push(m.await.unwrap().unwrap());
        }
        // The bot stops last, so no meter's last reading finds it gone.
        stop_bot_tx.send(true).unwrap();
        bot.await.unwrap().unwrap();
        p1.abort();
        plug.abort();
        (summaries, reports)
    });
    let both: Vec<Watts> = summaries
        .iter()
        .filter(|(m, _)| *m == 2)
        .map(|(_, t)| *t)
        .collect();
    assert!(both.len() >= 5, "{summaries:?}");
    assert!(
        both.iter().all(|t| *t == Watts(P1_WATTS + TASMOTA_WATTS)),
        "{summaries:?}"
    );
    // Intervals with one house are one of the two values, never a zero from a slow start.
    for (m, t) in &summaries {
        if *m == 1 {
            assert!(
                [Watts(P1_WATTS), Watts(TASMOTA_WATTS)].contains(t),
                "{summaries:?}"
            );
        }
    }
    for m in &meters {
        assert!(m.sent >= 5, "{m:?}");
        assert_eq!(m.acknowledged, m.sent, "{m:?}");
    }
}
