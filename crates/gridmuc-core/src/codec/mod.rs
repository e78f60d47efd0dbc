//! Wire format v0 (see DESIGN.md): XEP-0323 readings and gridmuc alerts as minidom elements.
//!
//! Encoding builds minidom elements; decoding refuses anything doubtful with a typed
//! [`Rejection`](crate::reject::Rejection) that callers count. `decode_stanza` parses raw bytes
//! through a strict zero-copy fast path and falls back to minidom for anything unusual.

mod alert;
mod fast;
mod node;
mod sensordata;
mod summary;

pub use alert::{decode_alert, encode_alert};
pub use sensordata::{
    FIELD_KINDS, Field, FieldValue, MessageKind, SensorData, SensorNode, SensorTimestamp,
    check_power, decode_fields, decode_message, decode_payloads, decode_stanza, encode_fields,
    encode_message, find_fields, parse_sensor_data, reading_body,
};
pub use summary::{
    SpikeSummary, Summary, SummaryMode, decode_summary, encode_summary, whole_watts,
};

use crate::units::Watts;

/// XEP-0323 sensor-data namespace.
pub const NS_SENSORDATA: &str = "urn:xmpp:iot:sensordata";
/// gridmuc alert namespace (v0).
pub const NS_ALERT: &str = "urn:gridmuc:alert:0";
/// gridmuc interval summary namespace (v0).
pub const NS_SUMMARY: &str = "urn:gridmuc:summary:0";
/// XMPP client namespace used for whole `<message/>` stanzas.
pub const NS_CLIENT: &str = "jabber:client";
/// The constant `nodeId` of every reading; nothing in a reading may identify the house.
pub const METER_NODE_ID: &str = "meter";
/// Field name for consumption (must be >= 0).
pub const FIELD_POWER: &str = "Power";
/// Field name for net export (value >= 0 means the house feeds that much into the grid).
pub const FIELD_EXPORT: &str = "Export Power";

/// The finest step a reading is reported in: meters round to it (or to a coarser multiple of
/// their own) and the bot rounds what it decodes to it, so a reading's last digits cannot
/// fingerprint a house.
pub const QUANTUM_WATTS: u32 = 10;

/// Limits the decoder enforces; defaults are DESIGN.md's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodecLimits {
    /// Largest stanza accepted, in bytes (default 4096).
    pub max_stanza_bytes: usize,
    /// Largest plausible power of one house (default 25 kW), import or export.
    pub max_house_power: Watts,
    /// Quantisation step in watts applied to decoded values (default 10).
    pub quantum_watts: u32,
    /// Deepest element nesting accepted (default 8).
    pub max_depth: usize,
}

impl Default for CodecLimits {
    fn default() -> Self {
        CodecLimits {
            max_stanza_bytes: 4096,
            max_house_power: Watts(25_000),
            quantum_watts: QUANTUM_WATTS,
            max_depth: 8,
        }
    }
}
