//! PLACEHOLDER signatures for the XEP-0323 reading codec (implementation in progress).

use super::CodecLimits;
use crate::reading::{Quality, Reading};
use crate::reject::Rejection;
use crate::time::Timestamp;
use minidom::Element;

/// Message type a reading travels in: broadcast to the room or direct to the bot's nickname.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// `type='groupchat'` to the room (broadcast mode).
    Groupchat,
    /// `type='chat'` to `room@service/botnick` (direct mode).
    Chat,
}

/// A generic XEP-0323 `<fields/>` payload, so the XEP's own examples parse even without a power field.
#[derive(Clone, Debug, PartialEq)]
pub struct SensorData {
    /// `seqnr` attribute.
    pub seqnr: u64,
    /// `done` attribute.
    pub done: bool,
    /// `<node/>` children.
    pub nodes: Vec<SensorNode>,
}

/// One `<node nodeId='…'/>`.
#[derive(Clone, Debug, PartialEq)]
pub struct SensorNode {
    /// `nodeId`.
    pub node_id: String,
    /// `<timestamp/>` children.
    pub timestamps: Vec<SensorTimestamp>,
}

/// One `<timestamp value='…'/>` group.
#[derive(Clone, Debug, PartialEq)]
pub struct SensorTimestamp {
    /// Parsed `value`.
    pub at: Timestamp,
    /// Field children.
    pub fields: Vec<Field>,
}

/// One field of any XEP-0323 type.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// `name`.
    pub name: String,
    /// Typed value.
    pub value: FieldValue,
    /// Quality flags.
    pub quality: Quality,
}

/// Typed field value.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// `<numeric value unit/>`.
    Numeric {
        /// Raw value.
        value: f64,
        /// Unit string.
        unit: String,
    },
    /// Any other field type, kept as its raw `value` text.
    Other {
        /// Element name (`boolean`, `string`, …).
        kind: String,
        /// Raw `value` attribute.
        value: String,
    },
}

/// Builds the `<fields/>` payload of a reading.
pub fn encode_fields(_reading: &Reading) -> Element {
    todo!()
}

/// Human body for chat clients, e.g. `1.84 kW`.
pub fn reading_body(_reading: &Reading) -> String {
    todo!()
}

/// Builds a whole `<message/>` stanza carrying a reading.
pub fn encode_message(_reading: &Reading, _to: &str, _kind: MessageKind, _id: &str) -> Element {
    todo!()
}

/// Finds the sensor-data payload among a message's payloads.
pub fn find_fields(_payloads: &[Element]) -> Option<&Element> {
    todo!()
}

/// Parses `<fields/>` generically.
pub fn parse_sensor_data(_fields: &Element, _limits: &CodecLimits) -> Result<SensorData, Rejection> {
    todo!()
}

/// Decodes a `<fields/>` payload into a validated reading.
pub fn decode_fields(_fields: &Element, _limits: &CodecLimits) -> Result<Reading, Rejection> {
    todo!()
}

/// Decodes a whole `<message/>` element.
pub fn decode_message(_message: &Element, _limits: &CodecLimits) -> Result<Reading, Rejection> {
    todo!()
}

/// Decodes raw stanza bytes.
pub fn decode_stanza(_bytes: &[u8], _limits: &CodecLimits) -> Result<Reading, Rejection> {
    todo!()
}
