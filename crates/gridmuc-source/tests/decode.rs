//! Real captures and hand-built national variants through the sans-IO decoders, and every
//! config form the README shows.

#![allow(clippy::unwrap_used)]

use gridmuc_core::{Timestamp, Watts};
use gridmuc_source::accumulate::{Accumulator, Fault};
use gridmuc_source::dsmr::{self, P1Decoder, P1Error};
use gridmuc_source::sml::{SmlDecoder, SmlError};
use gridmuc_source::{SourceConfig, mqtt};

mod common;
use common::{FLUVIUS, dsmr_capture, sml_capture};

fn decode_p1(bytes: &[u8]) -> Vec<Result<gridmuc_source::accumulate::Observation, P1Error>> {
    let mut out = Vec::new();
    P1Decoder::default().push(bytes, &mut out);
    out
}

#[test]
fn dutch_captures_read_with_their_checksums() {
    let out = decode_p1(&[dsmr_capture("telegram.txt"), dsmr_capture("telegram3.txt")].concat());
    assert_eq!(out.len(), 2, "{out:?}");
    let a = out[0].as_ref().unwrap();
    assert_eq!(a.power, Some(741.0));
    let e = a.energy.unwrap();
    assert_eq!(
        (e.import_wh.round(), e.export_wh, e.resolution_wh),
        (9_053_867.0, 0.0, 1.0)
    );
    let b = out[1].as_ref().unwrap();
    assert_eq!(b.power, Some(1_193.0));
    assert_eq!(b.energy.unwrap().export_wh.round(), 246_913_578.0);
}

#[test]
fn belgian_telegram_reads_and_export_is_negative() {
    let out = decode_p1(dsmr::seal(FLUVIUS).as_bytes());
    let obs = out[0].as_ref().unwrap();
    assert_eq!(obs.power, Some(-1_234.0));
    let e = obs.energy.unwrap();
    assert_eq!((e.import_wh.round(), e.export_wh.round()), (15_792.0, 11.0));
}

#[test]
fn garbled_telegrams_are_refused_and_counted() {
    let good = dsmr_capture("telegram.txt");
    let mut flipped = good.clone();
    let at = flipped.windows(6).position(|w| w == b"00.741").unwrap();
    flipped[at + 3] = b'9';
    let mut bad_value = dsmr::seal(FLUVIUS)
        .replace("01.234*kW", "01.2x4*kW")
        .into_bytes();
    // Re-seal so only the value is wrong, not the checksum.
    bad_value = dsmr::seal(
        std::str::from_utf8(&bad_value)
            .unwrap()
            .split("\r\n!")
            .next()
            .unwrap(),
    )
    .into_bytes();
    let out = decode_p1(&[flipped, bad_value, good[..200].to_vec(), good.clone()].concat());
    assert!(matches!(out[0], Err(P1Error::Crc { .. })), "{out:?}");
    assert!(matches!(out[1], Err(P1Error::Value { .. })), "{out:?}");
    assert_eq!(out[2], Err(P1Error::Truncated));
    assert_eq!(out[3].as_ref().unwrap().power, Some(741.0));
    assert_eq!(out.len(), 4);
    // Only garbled frames in an interval: a counted garbled fault, not a zero.
    let mut acc = Accumulator::new(0);
    for _ in &out[..3] {
        acc.garbled();
    }
    assert_eq!(acc.take(Timestamp(1)), Err(Fault::Garbled));
    acc.observe(Timestamp(2), *out[3].as_ref().unwrap());
    assert_eq!(acc.take(Timestamp(3)), Ok(Watts(741)));
    assert_eq!(
        (acc.counts().garbled_frames, acc.counts().garbled_intervals),
        (3, 1)
    );
}

fn decode_sml(bytes: &[u8]) -> Vec<Result<gridmuc_source::accumulate::Observation, SmlError>> {
    let mut out = Vec::new();
    SmlDecoder::default().push(bytes, &mut out);
    out
}

#[test]
fn german_sml_captures() {
    let iskra = decode_sml(&sml_capture("ISKRA_MT631-D1A52-K0z-H01_with_PIN.bin"));
    let powers: Vec<f64> = iskra
        .iter()
        .map(|o| o.as_ref().unwrap().power.unwrap())
        .collect();
    assert_eq!(powers, [193.0, 194.0, 193.0, 194.0, 194.0]);
    let e = iskra[0].as_ref().unwrap().energy.unwrap();
    assert_eq!(
        ((e.import_wh * 10.0).round(), e.resolution_wh),
        (20_431_047.0, 0.1)
    );
    // A DZG meter feeding in: negative 16.7.0 and a growing 2.8.0.
    let dzg = decode_sml(&sml_capture("DZG_DVS-7420.2V.G2_mtr2_neg.bin"));
    let powers: Vec<f64> = dzg
        .iter()
        .map(|o| o.as_ref().unwrap().power.unwrap())
        .collect();
    assert_eq!(powers, [-105.5, -106.78, -104.38]);
    assert_eq!(
        (dzg[0].as_ref().unwrap().energy.unwrap().export_wh * 10.0).round(),
        15_003_213.0
    );
    let mut acc = Accumulator::new(0);
    for (i, o) in dzg.iter().enumerate() {
        acc.observe(Timestamp(i as i64 * 1_000), *o.as_ref().unwrap());
    }
    assert_eq!(acc.take(Timestamp(3_000)), Ok(Watts(-106)));
}

#[test]
fn a_corrupted_sml_file_is_refused_and_the_rest_still_read() {
    let mut bytes = sml_capture("ISKRA_MT631-D1A52-K0z-H01_with_PIN.bin");
    bytes[100] ^= 0x55;
    let out = decode_sml(&bytes);
    assert_eq!(out.len(), 5, "{out:?}");
    assert!(out[0].is_err(), "{out:?}");
    assert_eq!(out.iter().filter(|o| o.is_ok()).count(), 4);
}

#[derive(serde::Deserialize)]
struct Meter {
    source: SourceConfig,
}

fn source(toml: &str) -> Result<SourceConfig, String> {
    toml::from_str::<Meter>(toml)
        .map(|m| m.source)
        .map_err(|e| e.to_string())
}

#[test]
fn config_forms() {
    let dsmr = source(r#"source = { kind = "dsmr", port = "/dev/ttyUSB0" }"#).unwrap();
    assert!(matches!(dsmr, SourceConfig::Dsmr(l) if l.port.as_deref() == Some("/dev/ttyUSB0")));
    let tcp = source(r#"source = { kind = "dsmr", tcp = "127.0.0.1:2001" }"#).unwrap();
    assert!(matches!(tcp, SourceConfig::Dsmr(l) if l.tcp.as_deref() == Some("127.0.0.1:2001")));
    assert!(matches!(
        source(r#"source = { kind = "sml", port = "/dev/ttyUSB1", baud = 9600 }"#),
        Ok(SourceConfig::Sml(_))
    ));
    let m = source(r#"source = { kind = "mqtt", broker = "127.0.0.1:1883", preset = "shelly-pro-em", topic = "pro/status/em1:1", password = "hunter2", username = "u" }"#).unwrap();
    let SourceConfig::Mqtt(m) = m else { panic!() };
    assert_eq!(m.preset, Some(mqtt::Preset::ShellyProEm));
    assert!(!format!("{m:?}").contains("hunter2"), "password in Debug");
    let m =
        source(r#"source = { kind = "mqtt", url = "mqtt://h", topic = "t", json_path = "a.b" }"#)
            .unwrap();
    assert!(matches!(m, SourceConfig::Mqtt(c) if c.path.as_deref() == Some("a.b")));
    assert!(
        matches!(source(r#"source = { kind = "replay", path = "h.csv", speed = 60 }"#), Ok(SourceConfig::Replay { speed, .. }) if speed == 60.0)
    );
    assert!(
        matches!(source(r#"source = { kind = "replay", path = "h.csv" }"#), Ok(SourceConfig::Replay { speed, .. }) if speed == 1.0)
    );
    let lux = source(
        r#"source = { kind = "dsmr", port = "/dev/ttyUSB0", key = "00 11", auth_key = "ff" }"#,
    )
    .unwrap();
    let SourceConfig::Dsmr(lux) = lux else {
        panic!()
    };
    assert_eq!(lux.key.map(|k| k.0).as_deref(), Some("00 11"));
    assert!(
        !format!("{:?}", lux.auth_key).contains("ff"),
        "key in Debug"
    );
    // Today's forms.
    assert_eq!(
        source(r#"source = { kind = "model" }"#),
        Ok(SourceConfig::Model)
    );
    assert_eq!(
        source(r#"source = { kind = "stdin" }"#),
        Ok(SourceConfig::Stdin)
    );
    assert!(matches!(
        source(r#"source = { kind = "csv", path = "h.csv" }"#),
        Ok(SourceConfig::Csv { .. })
    ));
    // Clear errors.
    let e = source(r#"source = { kind = "dsmr", prot = "/dev/ttyUSB0" }"#).unwrap_err();
    assert!(e.contains("unknown field `prot`"), "{e}");
    let e = source(r#"source = { kind = "mqtt", broker = "h", preset = "tasmota9" }"#).unwrap_err();
    assert!(e.contains("unknown variant `tasmota9`"), "{e}");
    let e = source(r#"source = { kind = "p1" }"#).unwrap_err();
    assert!(e.contains("unknown variant `p1`"), "{e}");
}

#[test]
fn the_example_configs_parse() {
    let dir = format!("{}/../../examples/sources", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        source(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        seen += 1;
    }
    assert_eq!(seen, 10, "example sources");
}
