//! Live sources without hardware: DSMR and SML through a pseudo-terminal pair and over TCP,
//! and MQTT against a real Mosquitto (Debian's package) on a free loopback port, one test
//! per preset. Waits are bounded guards; assertions are on values and counts only.

#![allow(clippy::unwrap_used)]

use gridmuc_core::{Timestamp, Watts};
use gridmuc_source::dsmr;
use gridmuc_source::mqtt::Preset;
use gridmuc_source::{Link, Sample, Source, SourceConfig, SourceError};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

mod common;
use common::{FLUVIUS, Mosquitto, sml_capture};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn sample(src: &mut Source) -> Sample {
    src.sample(Timestamp(0))
}

/// Waits until the source has read `frames` usable frames in all (a guard, not a measurement).
async fn frames(src: &Source, frames: u64) {
    for _ in 0..500 {
        if src.counts().frames >= frames {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("source read {:?}, wanted {frames} frames", src.counts());
}

async fn garbled(src: &Source, n: u64) {
    for _ in 0..500 {
        if src.counts().garbled_frames >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("source read {:?}, wanted {n} garbled", src.counts());
}

fn telegram(import_w: u32, export_w: u32) -> String {
    dsmr::seal(&format!(
        "/ISK5\\2M550T-1012\n\n1-3:0.2.8(50)\n1-0:1.8.1(001234.567*kWh)\n1-0:1.8.2(002345.678*kWh)\n1-0:2.8.1(000100.000*kWh)\n1-0:2.8.2(000000.000*kWh)\n1-0:1.7.0({:02}.{:03}*kW)\n1-0:2.7.0({:02}.{:03}*kW)\n1-0:31.7.0(003*A)\n!",
        import_w / 1000,
        import_w % 1000,
        export_w / 1000,
        export_w % 1000
    ))
}

fn link_port(port: &str) -> Link {
    Link {
        port: Some(port.to_owned()),
        hold: Some(0.0),
        ..Link::default()
    }
}

fn link_tcp(addr: std::net::SocketAddr) -> Link {
    Link {
        tcp: Some(addr.to_string()),
        hold: Some(0.0),
        ..Link::default()
    }
}

/// A pseudo-terminal: the meter writes to the master, the source opens the slave by name.
fn pty() -> (
    tokio_serial::SerialStream,
    tokio_serial::SerialStream,
    String,
) {
    use tokio_serial::SerialPort;
    let (master, slave) = tokio_serial::SerialStream::pair().unwrap();
    let name = slave.name().unwrap();
    (master, slave, name)
}

#[test]
fn dsmr_through_a_serial_port() {
    runtime().block_on(async {
        let (mut meter, _slave, name) = pty();
        let mut src =
            Source::open(&SourceConfig::Dsmr(link_port(&name)), &mut rand::rng()).unwrap();
        assert_eq!(
            sample(&mut src),
            Sample::Skip,
            "nothing sent yet: a dead interval"
        );
        for (i, e) in [(1_500, 0), (2_500, 0), (0, 800)] {
            meter.write_all(telegram(i, e).as_bytes()).await.unwrap();
        }
        frames(&src, 3).await;
        // (1500 + 2500 - 800) / 3
        assert_eq!(sample(&mut src), Sample::Value(Watts(1_067)));
        // A flipped digit: refused by the checksum, the interval is garbled, not zero.
        meter
            .write_all(telegram(900, 0).replace("00.900", "00.100").as_bytes())
            .await
            .unwrap();
        garbled(&src, 1).await;
        assert_eq!(sample(&mut src), Sample::Skip);
        meter
            .write_all(telegram(0, 1_234).as_bytes())
            .await
            .unwrap();
        frames(&src, 4).await;
        assert_eq!(sample(&mut src), Sample::Value(Watts(-1_234)));
        let c = src.counts();
        assert_eq!(
            (
                c.frames,
                c.garbled_frames,
                c.dead_intervals,
                c.garbled_intervals
            ),
            (4, 1, 1, 1)
        );
    });
}

#[test]
fn a_missing_serial_device_is_a_clear_error() {
    runtime().block_on(async {
        let err = Source::open(
            &SourceConfig::Dsmr(link_port("/dev/ttyNOPE-gridmuc")),
            &mut rand::rng(),
        )
        .unwrap_err();
        assert!(matches!(err, SourceError::Device { .. }), "{err}");
        assert!(err.to_string().contains("/dev/ttyNOPE-gridmuc"), "{err}");
        let both = Link {
            port: Some("/dev/x".into()),
            tcp: Some("h:1".into()),
            ..Link::default()
        };
        assert!(matches!(
            Source::open(&SourceConfig::Sml(both), &mut rand::rng()),
            Err(SourceError::Config(_))
        ));
    });
    // Outside a runtime: an error, not a panic.
    let err = Source::open(
        &SourceConfig::Dsmr(link_tcp("127.0.0.1:9".parse().unwrap())),
        &mut rand::rng(),
    );
    assert!(matches!(err, Err(SourceError::NoRuntime)));
}

#[test]
fn dsmr_over_a_tcp_bridge_survives_a_reconnect() {
    runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut src = Source::open(&SourceConfig::Dsmr(link_tcp(addr)), &mut rand::rng()).unwrap();
        let (mut bridge, _) = listener.accept().await.unwrap();
        // Joined midway: the tail of a telegram comes first and is skipped silently.
        let first = telegram(2_000, 0);
        bridge.write_all(&first.as_bytes()[40..]).await.unwrap();
        bridge.write_all(first.as_bytes()).await.unwrap();
        bridge
            .write_all(dsmr::seal(FLUVIUS).as_bytes())
            .await
            .unwrap();
        frames(&src, 2).await;
        // 2000 W and the Belgian telegram's 1234 W export.
        assert_eq!(sample(&mut src), Sample::Value(Watts(383)));
        drop(bridge);
        let (mut bridge, _) = listener.accept().await.unwrap();
        bridge.write_all(telegram(700, 0).as_bytes()).await.unwrap();
        frames(&src, 3).await;
        assert_eq!(sample(&mut src), Sample::Value(Watts(700)));
        assert_eq!(src.counts().garbled_frames, 0);
    });
}

#[test]
fn sml_through_a_serial_port_and_over_tcp() {
    runtime().block_on(async {
        let (mut head, _slave, name) = pty();
        let mut src = Source::open(&SourceConfig::Sml(link_port(&name)), &mut rand::rng()).unwrap();
        head.write_all(&sml_capture("ISKRA_MT631-D1A52-K0z-H01_with_PIN.bin"))
            .await
            .unwrap();
        frames(&src, 5).await;
        // 193, 194, 193, 194, 194 W: the registers moved 0.2 Wh, too little against 0.1 Wh steps.
        assert_eq!(sample(&mut src), Sample::Value(Watts(194)));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut src = Source::open(&SourceConfig::Sml(link_tcp(addr)), &mut rand::rng()).unwrap();
        let (mut bridge, _) = listener.accept().await.unwrap();
        let mut corrupt = sml_capture("DZG_DVS-7420.2V.G2_mtr2_neg.bin");
        corrupt[60] ^= 0x11;
        bridge.write_all(&corrupt).await.unwrap();
        garbled(&src, 1).await;
        frames(&src, 2).await;
        // Exporting: the two intact files say -106.78 and -104.38 W.
        assert_eq!(sample(&mut src), Sample::Value(Watts(-106)));
        assert_eq!(src.counts().garbled_frames, 1);
    });
}

/// Publishes `warmup` until the source has it (the subscription is live), closes that
/// interval, then publishes `payloads` one by one and returns the interval's sample.
async fn feed(
    src: &mut Source,
    device: &rumqttc::AsyncClient,
    topic: &str,
    warmup: &str,
    payloads: &[&str],
) -> Sample {
    for _ in 0..100 {
        device
            .publish(
                topic,
                rumqttc::QoS::AtMostOnce,
                false,
                warmup.as_bytes().to_vec(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        if src.counts().frames > 0 {
            break;
        }
    }
    frames(src, 1).await;
    // Copies of the warm-up still in flight land in the interval we throw away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = src.counts().frames;
    let _ = sample(src);
    for (i, p) in payloads.iter().enumerate() {
        device
            .publish(
                topic,
                rumqttc::QoS::AtMostOnce,
                false,
                p.as_bytes().to_vec(),
            )
            .await
            .unwrap();
        if p.contains("power") || p.contains("Power") {
            frames(src, base + i as u64 + 1).await;
        }
    }
    sample(src)
}

fn mqtt_test(
    preset: Preset,
    topic_filter: Option<&str>,
    topic: &str,
    payloads: &[&str],
    want: Sample,
) {
    let broker = Mosquitto::start("allow_anonymous true");
    runtime().block_on(async {
        let mut src = Source::open(
            &SourceConfig::Mqtt(broker.config(preset, topic_filter)),
            &mut rand::rng(),
        )
        .unwrap();
        let device = broker.device();
        let got = feed(&mut src, &device, topic, payloads[0], &payloads[1..]).await;
        assert_eq!(got, want);
        assert_eq!(src.counts().garbled_frames, 0);
    });
}

#[test]
fn mqtt_tasmota() {
    let p = |w: u32| {
        format!(
            r#"{{"Time":"2026-11-30T10:00:00","ENERGY":{{"Total":1234.567,"Today":1.2,"Power":{w},"Voltage":231}}}}"#
        )
    };
    let (a, b, c) = (p(100), p(1_000), p(2_000));
    mqtt_test(
        Preset::Tasmota,
        None,
        "tele/tasmota_1A2B3C/SENSOR",
        &[&a, &b, &c],
        Sample::Value(Watts(1_500)),
    );
}

#[test]
fn mqtt_shelly_gen2() {
    let p = |w: f64| {
        format!(
            r#"{{"id":0,"source":"timer","output":true,"apower":{w},"voltage":230.2,"aenergy":{{"total":5012.25}}}}"#
        )
    };
    let (a, b, c) = (p(1.0), p(60.5), p(61.5));
    mqtt_test(
        Preset::ShellyGen2,
        None,
        "shellyplusplugs-aa11/status/switch:0",
        &[&a, &b, &c],
        Sample::Value(Watts(61)),
    );
}

#[test]
fn mqtt_shelly_pro_em_exports() {
    let p = |w: f64| {
        format!(
            r#"{{"id":1,"current":3.2,"voltage":229.8,"act_power":{w},"aprt_power":750.0,"pf":0.98}}"#
        )
    };
    let (a, b, c) = (p(5.0), p(-700.0), p(-740.0));
    mqtt_test(
        Preset::ShellyProEm,
        Some("shellyproem50-cc/status/em1:1"),
        "shellyproem50-cc/status/em1:1",
        &[&a, &b, &c],
        Sample::Value(Watts(-720)),
    );
}

#[test]
fn mqtt_zigbee2mqtt() {
    let p = |w: u32| {
        format!(r#"{{"linkquality":87,"power":{w},"energy":3.21,"state":"ON","voltage":231}}"#)
    };
    let (a, b) = (p(1), p(2_222));
    mqtt_test(
        Preset::Zigbee2mqtt,
        None,
        "zigbee2mqtt/washing machine",
        &[&a, &b],
        Sample::Value(Watts(2_222)),
    );
}

#[test]
fn mqtt_payload_without_the_field_is_a_garbled_interval() {
    let broker = Mosquitto::start("allow_anonymous true");
    runtime().block_on(async {
        let mut src = Source::open(
            &SourceConfig::Mqtt(broker.config(Preset::Tasmota, None)),
            &mut rand::rng(),
        )
        .unwrap();
        let device = broker.device();
        let topic = "tele/t1/SENSOR";
        let got = feed(
            &mut src,
            &device,
            topic,
            r#"{"ENERGY":{"Power":5}}"#,
            &[r#"{"ENERGY":{"Voltage":230}}"#, "not json"],
        )
        .await;
        // The two bad messages may still be in flight when the interval closed; wait for them.
        garbled(&src, 2).await;
        assert!(matches!(got, Sample::Skip), "{got:?}");
        let c = src.counts();
        assert_eq!((c.frames, c.garbled_frames), (1, 2));
        assert_eq!(sample(&mut src), Sample::Skip);
        assert_eq!(
            src.counts().dead_intervals + src.counts().garbled_intervals,
            2
        );
    });
}

#[test]
fn a_broker_that_refuses_gives_dead_intervals_not_zeros() {
    let broker = Mosquitto::start("allow_anonymous false");
    runtime().block_on(async {
        let mut cfg = broker.config(Preset::Tasmota, None);
        cfg.username = Some("house".into());
        cfg.password = Some(gridmuc_source::Secret("wrong".into()));
        let mut src = Source::open(&SourceConfig::Mqtt(cfg), &mut rand::rng()).unwrap();
        // Let it try (and be refused) before the intervals close.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sample(&mut src), Sample::Skip);
        assert_eq!(sample(&mut src), Sample::Skip);
        let c = src.counts();
        assert_eq!((c.frames, c.dead_intervals), (0, 2));
    });
}

/// A GUEK for the tests (made up; real ones come in the grid operator's letter).
const GUEK: &str = "AE 43 0B 4E 1B 97 7A 39 4E 1F 4E 2D 6A 4C 50 63";

fn smarty_link(addr: std::net::SocketAddr, key: &str) -> Link {
    Link {
        key: Some(gridmuc_source::Secret(key.to_owned())),
        ..link_tcp(addr)
    }
}

#[test]
fn luxembourg_encrypted_telegrams_decrypt_and_a_wrong_key_is_a_counted_fault() {
    use gridmuc_source::smarty::{SmartyKeys, seal};
    let keys = SmartyKeys::from_hex(GUEK, None).unwrap();
    // A real capture (Landis+Gyr E350, 741 W), encrypted as a Luxembourg meter would.
    let capture = common::dsmr_capture("telegram.txt");
    let title = *b"SAG\x10\x30\x00\x2a\x17";
    let stream: Vec<u8> = (7..9u32)
        .flat_map(|c| seal(&keys, title, c, &capture))
        .collect();
    runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut src = Source::open(
            &SourceConfig::Dsmr(smarty_link(addr, GUEK)),
            &mut rand::rng(),
        )
        .unwrap();
        let (mut bridge, _) = listener.accept().await.unwrap();
        // Joined midway: a frame's tail first, then two whole frames.
        bridge
            .write_all(&stream[stream.len() / 2 + 3..])
            .await
            .unwrap();
        bridge.write_all(&stream).await.unwrap();
        frames(&src, 2).await;
        assert_eq!(sample(&mut src), Sample::Value(Watts(741)));
        assert_eq!(src.counts().garbled_frames, 0);

        // The same frames under another key: every frame refused, the interval a garbled fault.
        let wrong = "00112233445566778899AABBCCDDEEFF";
        let mut bad = Source::open(
            &SourceConfig::Dsmr(smarty_link(addr, wrong)),
            &mut rand::rng(),
        )
        .unwrap();
        let (mut bridge, _) = listener.accept().await.unwrap();
        bridge.write_all(&stream).await.unwrap();
        garbled(&bad, 2).await;
        assert_eq!(sample(&mut bad), Sample::Skip);
        let c = bad.counts();
        assert_eq!((c.frames, c.garbled_frames, c.garbled_intervals), (0, 2, 1));
    });
    // Keys are checked when the source opens, and are for DSMR only.
    let err = Source::open(
        &SourceConfig::Dsmr(smarty_link("127.0.0.1:9".parse().unwrap(), "abc")),
        &mut rand::rng(),
    );
    assert!(
        matches!(&err, Err(SourceError::Config(m)) if m == "key: 3 hex digits, expected 32"),
        "{err:?}"
    );
    let sml = Source::open(
        &SourceConfig::Sml(smarty_link("127.0.0.1:9".parse().unwrap(), GUEK)),
        &mut rand::rng(),
    );
    assert!(matches!(sml, Err(SourceError::Config(_))), "{sml:?}");
}

#[test]
fn mqtt_over_tls_trusts_the_ca_file_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (ca, cert, key) = gridmuc_server::test_certificates(dir.path(), &names).unwrap();
    // Mosquitto started as root reads its files as user `mosquitto`: a test key may be readable.
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(dir.path(), 0o755), (key.as_path(), 0o644)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // The TLS listener the meter reads, and a plain one for the device that publishes.
    let plain = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = Mosquitto::start(&format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous true\nlistener {plain} 127.0.0.1",
        ca.display(),
        cert.display(),
        key.display()
    ));
    let tls = |ca_file: Option<std::path::PathBuf>| {
        SourceConfig::Mqtt(gridmuc_source::MqttConfig {
            broker: format!("mqtts://localhost:{}", broker.port),
            ca_file,
            ..broker.config(Preset::Tasmota, None)
        })
    };
    let p = |w: u32| format!(r#"{{"ENERGY":{{"Power":{w}}}}}"#);
    runtime().block_on(async {
        let device = Mosquitto::device_at(plain);
        let mut src = Source::open(&tls(Some(ca.clone())), &mut rand::rng()).unwrap();
        let got = feed(
            &mut src,
            &device,
            "tele/plug/SENSOR",
            &p(10),
            &[&p(300), &p(500)],
        )
        .await;
        assert_eq!(got, Sample::Value(Watts(400)));
        // Without the CA file only the system's roots are trusted: the handshake fails, every
        // interval is dead, never a zero.
        let mut untrusting = Source::open(&tls(None), &mut rand::rng()).unwrap();
        for _ in 0..20 {
            device
                .publish(
                    "tele/plug/SENSOR",
                    rumqttc::QoS::AtMostOnce,
                    false,
                    p(700).into_bytes(),
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(sample(&mut untrusting), Sample::Skip);
        let c = untrusting.counts();
        assert_eq!((c.frames, c.dead_intervals), (0, 1));
    });
    // A CA file on a plain broker is a mistake said at start.
    let plain_with_ca = SourceConfig::Mqtt(gridmuc_source::MqttConfig {
        ca_file: Some(ca),
        ..broker.config(Preset::Tasmota, None)
    });
    let err = Source::open(&plain_with_ca, &mut rand::rng());
    assert!(
        matches!(&err, Err(SourceError::Config(m)) if m.contains("mqtts://")),
        "{err:?}"
    );
}
