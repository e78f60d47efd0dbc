//! MQTT devices (Tasmota, Shelly, Zigbee2MQTT, Home Assistant bridges): which topic, which
//! JSON field, and the sans-IO reading of one message. The broker session is `rumqttc`'s
//! (the maintained async MQTT client, with its protocol state kept apart from I/O).

use crate::accumulate::{Energy, Observation, resolution};
use serde_json::Value;

/// A device family whose topic and fields are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Tasmota's telemetry: `tele/<device>/SENSOR`, `ENERGY.Power` W, `ENERGY.Total` kWh.
    Tasmota,
    /// Shelly Gen2 plugs and relays: `<prefix>/status/switch:0`, `apower` W, `aenergy.total` Wh.
    ShellyGen2,
    /// Shelly Pro EM: `<prefix>/status/em1:N`, `act_power` W (negative when exporting).
    ShellyProEm,
    /// Zigbee2MQTT plugs and meters: `zigbee2mqtt/<name>`, `power` W, `energy` kWh.
    Zigbee2mqtt,
}

/// The unit of an energy field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum EnergyUnit {
    /// Watt-hours.
    Wh,
    /// Kilowatt-hours.
    #[serde(rename = "kWh")]
    KWh,
}

impl EnergyUnit {
    fn wh(self) -> f64 {
        match self {
            EnergyUnit::Wh => 1.0,
            EnergyUnit::KWh => 1_000.0,
        }
    }
}

/// Where a device's power and energy are in its messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Fields {
    /// Topic filter to subscribe to (wildcards allowed).
    pub topic: String,
    /// Dotted path to the power in watts (`ENERGY.Power`).
    pub power: String,
    /// Dotted path to an energy register, and its unit.
    pub energy: Option<(String, EnergyUnit)>,
}

impl Preset {
    /// The preset's topic and fields.
    pub fn fields(self) -> Fields {
        let (topic, power, energy) = match self {
            Preset::Tasmota => (
                "tele/+/SENSOR",
                "ENERGY.Power",
                Some(("ENERGY.Total", EnergyUnit::KWh)),
            ),
            Preset::ShellyGen2 => (
                "+/status/switch:0",
                "apower",
                Some(("aenergy.total", EnergyUnit::Wh)),
            ),
            Preset::ShellyProEm => ("+/status/em1:0", "act_power", None),
            Preset::Zigbee2mqtt => ("zigbee2mqtt/+", "power", Some(("energy", EnergyUnit::KWh))),
        };
        Fields {
            topic: topic.to_owned(),
            power: power.to_owned(),
            energy: energy.map(|(p, u)| (p.to_owned(), u)),
        }
    }
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PayloadError {
    /// The payload is not JSON.
    #[error("payload is not JSON")]
    NotJson,
    /// The payload lacks the configured field.
    #[error("payload has no field {0:?}")]
    Missing(String),
    /// The field is not a number (or an array of numbers, which are summed: per-phase values).
    #[error("field {0:?} is not a number")]
    NotNumber(String),
}

/// Reads one device's messages; a wildcard topic locks onto the first device that answers,
/// so two plugs under `tele/+/SENSOR` are never averaged into one house.
#[derive(Clone, Debug)]
pub struct MqttReader {
    fields: Fields,
    device: Option<String>,
    others_seen: bool,
}

impl MqttReader {
    /// Reads `fields` from messages.
    pub fn new(fields: Fields) -> MqttReader {
        MqttReader {
            fields,
            device: None,
            others_seen: false,
        }
    }

    /// The topic filter to subscribe to.
    pub fn topic(&self) -> &str {
        &self.fields.topic
    }

    /// A message on `topic`: `None` if it is another device's (warned about once).
    pub fn handle(
        &mut self,
        topic: &str,
        payload: &[u8],
    ) -> Option<Result<Observation, PayloadError>> {
        match &self.device {
            None => self.device = Some(topic.to_owned()),
            Some(d) if d != topic => {
                if !self.others_seen {
                    self.others_seen = true;
                    tracing::warn!(
                        reading = %d, ignored = %topic,
                        "MQTT: the topic filter matches more than one device; reading the first only"
                    );
                }
                return None;
            }
            Some(_) => {}
        }
        Some(self.read(payload))
    }

    fn read(&self, payload: &[u8]) -> Result<Observation, PayloadError> {
        let json: Value = serde_json::from_slice(payload).map_err(|_| PayloadError::NotJson)?;
        let (power, _) = field(&json, &self.fields.power)?;
        let energy = match &self.fields.energy {
            // The energy field is optional: some firmware omits it in some messages.
            Some((path, unit)) => field(&json, path).ok().map(|(wh, text)| Energy {
                import_wh: wh * unit.wh(),
                export_wh: 0.0,
                resolution_wh: resolution(&text, unit.wh()),
            }),
            None => None,
        };
        Ok(Observation {
            power: Some(power),
            energy,
        })
    }
}

/// The number at a dotted path, and its text (for the resolution); arrays are summed.
fn field(json: &Value, path: &str) -> Result<(f64, String), PayloadError> {
    let missing = || PayloadError::Missing(path.to_owned());
    let not_number = || PayloadError::NotNumber(path.to_owned());
    let v = path.split('.').try_fold(json, |v, key| match v {
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => v.get(key),
    });
    let v = v.ok_or_else(missing)?;
    let n = match v {
        Value::Number(n) => n.as_f64().map(|f| (f, n.to_string())),
        Value::Array(items) => items
            .iter()
            .map(Value::as_f64)
            .sum::<Option<f64>>()
            .map(|f| (f, "0".to_owned())),
        _ => None,
    };
    n.filter(|(f, _)| f.is_finite()).ok_or_else(not_number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(preset: Preset, payload: &str) -> Result<Observation, PayloadError> {
        MqttReader::new(preset.fields()).read(payload.as_bytes())
    }

    #[test]
    fn presets_read_their_devices() {
        let t = read(
            Preset::Tasmota,
            r#"{"Time":"2026-11-30T10:00:00","ENERGY":{"TotalStartTime":"2026-01-01T00:00:00","Total":123.456,"Yesterday":1.2,"Today":0.5,"Power":842,"Voltage":231}}"#,
        )
        .unwrap();
        assert_eq!(t.power, Some(842.0));
        let e = t.energy.unwrap();
        assert_eq!(
            (e.import_wh.round(), e.resolution_wh.round()),
            (123_456.0, 1.0)
        );
        let s = read(
            Preset::ShellyGen2,
            r#"{"id":0,"source":"init","output":true,"apower":12.5,"voltage":230.1,"aenergy":{"total":4567.25,"by_minute":[1,2,3]}}"#,
        )
        .unwrap();
        assert_eq!(s.power, Some(12.5));
        assert_eq!(s.energy.unwrap().import_wh, 4567.25);
        let em = read(
            Preset::ShellyProEm,
            r#"{"id":0,"current":2.1,"voltage":229.0,"act_power":-480.2,"aprt_power":490.0}"#,
        )
        .unwrap();
        assert_eq!(em.power, Some(-480.2));
        let z = read(
            Preset::Zigbee2mqtt,
            r#"{"linkquality":120,"power":61,"energy":0.42,"state":"ON"}"#,
        )
        .unwrap();
        assert_eq!(z.power, Some(61.0));
    }

    #[test]
    fn clear_errors_for_bad_payloads() {
        assert_eq!(
            read(Preset::Tasmota, "842"),
            Err(PayloadError::Missing("ENERGY.Power".into()))
        );
        assert_eq!(
            read(Preset::Tasmota, "{not json"),
            Err(PayloadError::NotJson)
        );
        assert_eq!(
            read(Preset::Tasmota, r#"{"ENERGY":{"Power":"high"}}"#),
            Err(PayloadError::NotNumber("ENERGY.Power".into()))
        );
    }

    #[test]
    fn arrays_sum_or_index() {
        let f = Fields {
            topic: "t".into(),
            power: "ENERGY.Power".into(),
            energy: None,
        };
        let r = MqttReader::new(f.clone());
        let p = r#"{"ENERGY":{"Power":[100,200,-50]}}"#.as_bytes();
        assert_eq!(r.read(p).unwrap().power, Some(250.0));
        let r = MqttReader::new(Fields {
            power: "ENERGY.Power.1".into(),
            ..f
        });
        assert_eq!(r.read(p).unwrap().power, Some(200.0));
    }

    #[test]
    fn a_wildcard_locks_onto_the_first_device() {
        let mut r = MqttReader::new(Preset::Zigbee2mqtt.fields());
        assert!(r.handle("zigbee2mqtt/plug-a", br#"{"power":5}"#).is_some());
        assert!(r.handle("zigbee2mqtt/plug-b", br#"{"power":7}"#).is_none());
        assert!(r.handle("zigbee2mqtt/plug-a", br#"{"power":9}"#).is_some());
    }
}
