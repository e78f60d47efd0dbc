//! XEP-0323 reading codec: builds the reading stanza of DESIGN.md and turns untrusted
//! stanzas back into validated [`Reading`]s, refusing anything doubtful with a typed reason.
//!
//! The validating decoder is written once over [`XmlNode`] and runs on a minidom tree or on the
//! zero-copy [`fast`] parse, which `decode_stanza` tries first.

use super::node::{XmlNode, measure};
use super::{
    CodecLimits, FIELD_EXPORT, FIELD_POWER, METER_NODE_ID, NS_CLIENT, NS_SENSORDATA, fast,
};
use crate::reading::{Quality, Reading};
use crate::reject::Rejection;
use crate::time::Timestamp;
use crate::units::Watts;
use minidom::Element;
use minidom::rxml::{NcName, xml_ncname};

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

/// XEP-0323 field value element names; other elements inside `<timestamp/>` are ignored.
pub const FIELD_KINDS: [&str; 10] = [
    "boolean", "date", "dateTime", "duration", "enum", "int", "long", "numeric", "string", "time",
];

impl MessageKind {
    /// The `type` attribute value, so callers never spell it by hand.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Groupchat => "groupchat",
            MessageKind::Chat => "chat",
        }
    }
}

/// Builds the `<fields/>` payload of a reading, exactly as DESIGN.md shows it (export as `Export Power`).
pub fn encode_fields(reading: &Reading) -> Element {
    let (name, magnitude) = if reading.power.0 < 0 {
        (FIELD_EXPORT, reading.power.abs())
    } else {
        (FIELD_POWER, reading.power)
    };
    let mut numeric = Element::builder("numeric", NS_SENSORDATA)
        .attr(xml_ncname!("name").to_owned(), name)
        .attr(xml_ncname!("momentary").to_owned(), "true");
    for flag in reading.quality.names() {
        // Every name in `Quality::NAMES` is an NCName; the round-trip tests cover each flag.
        if let Ok(attr) = NcName::try_from(flag) {
            numeric = numeric.attr(attr, "true");
        }
    }
    let numeric = numeric
        .attr(xml_ncname!("value").to_owned(), magnitude.0.to_string())
        .attr(xml_ncname!("unit").to_owned(), "W")
        .build();
    let timestamp = Element::builder("timestamp", NS_SENSORDATA)
        .attr(xml_ncname!("value").to_owned(), reading.at.to_rfc3339())
        .append(numeric)
        .build();
    let node = Element::builder("node", NS_SENSORDATA)
        .attr(xml_ncname!("nodeId").to_owned(), METER_NODE_ID)
        .append(timestamp)
        .build();
    Element::builder("fields", NS_SENSORDATA)
        .attr(xml_ncname!("seqnr").to_owned(), reading.seqnr.to_string())
        .attr(xml_ncname!("done").to_owned(), "true")
        .append(node)
        .build()
}

/// Human body for chat clients watching the room, e.g. `1.84 kW`.
pub fn reading_body(reading: &Reading) -> String {
    reading.power.to_string()
}

/// Builds a whole `<message/>` stanza carrying a reading: body for people, payload for the bot.
pub fn encode_message(reading: &Reading, to: &str, kind: MessageKind, id: &str) -> Element {
    let body = Element::builder("body", NS_CLIENT)
        .append(reading_body(reading))
        .build();
    Element::builder("message", NS_CLIENT)
        .attr(xml_ncname!("type").to_owned(), kind.as_str())
        .attr(xml_ncname!("to").to_owned(), to)
        .attr(xml_ncname!("id").to_owned(), id)
        .append(body)
        .append(encode_fields(reading))
        .build()
}

/// Finds the sensor-data payload among a message's payloads (as tokio-xmpp hands them over).
pub fn find_fields(payloads: &[Element]) -> Option<&Element> {
    payloads.iter().find(|p| p.is("fields", NS_SENSORDATA))
}

/// Parses `<fields/>` generically, so any XEP-0323 payload (the XEP's own examples too) can be inspected.
pub fn parse_sensor_data(fields: &Element, limits: &CodecLimits) -> Result<SensorData, Rejection> {
    check_depth(fields, limits)?;
    expect_element(fields, "fields", NS_SENSORDATA)?;
    let seqnr = parse_seqnr(fields)?;
    let done = match fields.attr("done") {
        None => false,
        Some(v) => parse_bool(v).ok_or(Rejection::BadAttribute("done"))?,
    };
    let nodes = sensordata_children(fields, "node")
        .map(|node| {
            let node_id = node.attr("nodeId").ok_or(Rejection::Missing("nodeId"))?;
            let timestamps = sensordata_children(node, "timestamp")
                .map(|ts| {
                    let at = parse_timestamp(ts)?;
                    let fields = ts
                        .children()
                        .filter(|f| is_field(*f))
                        .map(parse_field)
                        .collect::<Result<_, _>>()?;
                    Ok(SensorTimestamp { at, fields })
                })
                .collect::<Result<_, Rejection>>()?;
            Ok(SensorNode {
                node_id: node_id.to_owned(),
                timestamps,
            })
        })
        .collect::<Result<_, Rejection>>()?;
    Ok(SensorData { seqnr, done, nodes })
}

/// Decodes a `<fields/>` payload into a validated reading (the bot's path for typed messages).
pub fn decode_fields(fields: &Element, limits: &CodecLimits) -> Result<Reading, Rejection> {
    check_depth(fields, limits)?;
    decode_fields_node(fields, limits)
}

/// Decodes a whole `<message/>` element, with the size and depth guards of raw stanzas.
pub fn decode_message(message: &Element, limits: &CodecLimits) -> Result<Reading, Rejection> {
    let m = measure(message, limits.max_depth);
    if m.bytes > limits.max_stanza_bytes {
        return Err(Rejection::Oversize {
            size: m.bytes,
            limit: limits.max_stanza_bytes,
        });
    }
    if !m.within_depth {
        return Err(Rejection::TooDeep(limits.max_depth));
    }
    decode_message_node(message, limits)
}

/// Decodes a typed message's payloads (`xmpp_parsers::message::Message::payloads`, what
/// tokio-xmpp hands the bot) with the same size, depth and single-payload rules as a stanza.
pub fn decode_payloads(payloads: &[Element], limits: &CodecLimits) -> Result<Reading, Rejection> {
    let mut bytes = 0;
    let mut within_depth = true;
    for p in payloads {
        // Payloads sit one level below `<message/>`.
        let m = measure(p, limits.max_depth.saturating_sub(1));
        bytes += m.bytes;
        within_depth &= m.within_depth;
    }
    if bytes > limits.max_stanza_bytes {
        return Err(Rejection::Oversize {
            size: bytes,
            limit: limits.max_stanza_bytes,
        });
    }
    if !within_depth {
        return Err(Rejection::TooDeep(limits.max_depth));
    }
    decode_fields_node(single_payload(payloads.iter())?, limits)
}

/// Decodes raw stanza bytes: size first, then the zero-copy fast path, minidom for anything unusual.
pub fn decode_stanza(bytes: &[u8], limits: &CodecLimits) -> Result<Reading, Rejection> {
    if bytes.len() > limits.max_stanza_bytes {
        return Err(Rejection::Oversize {
            size: bytes.len(),
            limit: limits.max_stanza_bytes,
        });
    }
    if let Some(doc) = fast::parse(bytes, limits.max_depth) {
        // Within the fast subset size and depth are already bounded: no need to measure.
        return decode_message_node(doc.root(), limits);
    }
    let message = Element::from_reader(bytes).map_err(|e| Rejection::Malformed(e.to_string()))?;
    decode_message(&message, limits)
}

fn check_depth(el: &Element, limits: &CodecLimits) -> Result<(), Rejection> {
    if measure(el, limits.max_depth).within_depth {
        Ok(())
    } else {
        Err(Rejection::TooDeep(limits.max_depth))
    }
}

fn expect_element<'a, N: XmlNode<'a>>(el: N, name: &str, ns: &str) -> Result<(), Rejection> {
    if el.name() == name && el.in_ns(ns) {
        Ok(())
    } else {
        Err(Rejection::WrongNamespace(format!(
            "expected <{name} xmlns='{ns}'>, got <{}> in '{}'",
            el.name(),
            el.ns_string()
        )))
    }
}

fn sensordata_children<'a, N: XmlNode<'a>>(el: N, name: &'static str) -> impl Iterator<Item = N> {
    el.children()
        .filter(move |c| c.name() == name && c.in_ns(NS_SENSORDATA))
}

fn is_field<'a, N: XmlNode<'a>>(el: N) -> bool {
    el.in_ns(NS_SENSORDATA) && FIELD_KINDS.contains(&el.name())
}

/// The one child `name` in the sensor-data namespace: `Ok(None)` if absent, refused if repeated
/// (several candidate readings are ambiguous) or present only in a foreign namespace.
fn single_child<'a, N: XmlNode<'a>>(el: N, name: &str) -> Result<Option<N>, Rejection> {
    single(el.children(), name)
}

/// [`single_child`] over any sequence of sibling elements.
fn single<'a, N: XmlNode<'a>>(
    siblings: impl Iterator<Item = N>,
    name: &str,
) -> Result<Option<N>, Rejection> {
    let mut found = None;
    let mut foreign = None;
    for c in siblings.filter(|c| c.name() == name) {
        if !c.in_ns(NS_SENSORDATA) {
            foreign = Some(c);
        } else if found.replace(c).is_some() {
            return Err(Rejection::AmbiguousPowerField);
        }
    }
    match (found, foreign) {
        (None, Some(c)) => Err(Rejection::WrongNamespace(format!(
            "<{name}> in '{}', expected '{NS_SENSORDATA}'",
            c.ns_string()
        ))),
        (found, _) => Ok(found),
    }
}

/// The message's single `<fields/>` payload.
fn single_payload<'a, N: XmlNode<'a>>(payloads: impl Iterator<Item = N>) -> Result<N, Rejection> {
    single(payloads, "fields")?.ok_or_else(|| {
        Rejection::WrongNamespace(format!("no <fields xmlns='{NS_SENSORDATA}'> payload"))
    })
}

fn decode_message_node<'a, N: XmlNode<'a>>(
    message: N,
    limits: &CodecLimits,
) -> Result<Reading, Rejection> {
    expect_element(message, "message", NS_CLIENT)?;
    decode_fields_node(single_payload(message.children())?, limits)
}

fn decode_fields_node<'a, N: XmlNode<'a>>(
    fields: N,
    limits: &CodecLimits,
) -> Result<Reading, Rejection> {
    expect_element(fields, "fields", NS_SENSORDATA)?;
    let seqnr = parse_seqnr(fields)?;
    let node = single_child(fields, "node")?.ok_or(Rejection::Missing("node"))?;
    node.attr("nodeId").ok_or(Rejection::Missing("nodeId"))?;
    let ts = single_child(node, "timestamp")?.ok_or(Rejection::Missing("timestamp"))?;
    let at = parse_timestamp(ts)?;
    let mut power = None;
    for f in ts.children().filter(|f| is_field(*f)) {
        let name = f.attr("name").ok_or(Rejection::Missing("name"))?;
        if (name == FIELD_POWER || name == FIELD_EXPORT) && power.replace(f).is_some() {
            return Err(Rejection::AmbiguousPowerField);
        }
    }
    let f = power.ok_or(Rejection::NoPowerField)?;
    if f.name() != "numeric" {
        return Err(Rejection::BadAttribute("power field type"));
    }
    let quality = parse_quality(f)?;
    if quality.is_unusable() {
        return Err(Rejection::Unusable);
    }
    let magnitude = parse_power(f, limits)?;
    let power = if f.attr("name") == Some(FIELD_EXPORT) {
        -magnitude
    } else {
        magnitude
    };
    Ok(Reading {
        power,
        at,
        seqnr,
        quality,
    })
}

/// XML Schema boolean (`true`/`false`/`1`/`0`).
fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn parse_seqnr<'a, N: XmlNode<'a>>(fields: N) -> Result<u64, Rejection> {
    fields
        .attr("seqnr")
        .ok_or(Rejection::Missing("seqnr"))?
        .trim()
        .parse()
        .map_err(|_| Rejection::BadAttribute("seqnr"))
}

fn parse_timestamp<'a, N: XmlNode<'a>>(ts: N) -> Result<Timestamp, Rejection> {
    let v = ts
        .attr("value")
        .ok_or(Rejection::Missing("timestamp value"))?;
    Timestamp::parse_rfc3339(v.trim()).ok_or(Rejection::BadAttribute("timestamp"))
}

fn parse_quality<'a, N: XmlNode<'a>>(field: N) -> Result<Quality, Rejection> {
    let mut quality = Quality::default();
    for (name, value) in field.attrs() {
        if let Some(flag) = Quality::from_name(name) {
            match parse_bool(value) {
                Some(true) => quality.insert(flag),
                Some(false) => {}
                None => {
                    return Err(Rejection::BadAttribute(
                        flag.names().next().unwrap_or("quality"),
                    ));
                }
            }
        }
    }
    Ok(quality)
}

/// Watts per unit; the design accepts exactly these, case-exact (`mW` is not `MW`).
fn unit_factor(unit: &str) -> Option<f64> {
    match unit {
        "W" => Some(1.0),
        "kW" => Some(1e3),
        "MW" => Some(1e6),
        _ => None,
    }
}

/// A power field's value in watts (magnitude, never negative), checked and quantised.
fn parse_power<'a, N: XmlNode<'a>>(field: N, limits: &CodecLimits) -> Result<Watts, Rejection> {
    let unit = field.attr("unit").ok_or(Rejection::Missing("unit"))?;
    let factor = unit_factor(unit).ok_or_else(|| Rejection::BadUnit(unit.to_owned()))?;
    let value: f64 = field
        .attr("value")
        .ok_or(Rejection::Missing("value"))?
        .trim()
        .parse()
        .map_err(|_| Rejection::BadAttribute("value"))?;
    check_power(value, factor, limits)
}

/// Validates a power magnitude of `value` units of `watts_per_unit` W and quantises it: the one place
/// the value rules of the wire format live, so the simulator's injected faults are judged exactly as
/// the bot judges stanzas.
pub fn check_power(
    value: f64,
    watts_per_unit: f64,
    limits: &CodecLimits,
) -> Result<Watts, Rejection> {
    if value.is_nan() {
        return Err(Rejection::NotANumber);
    }
    if value.is_infinite() {
        return Err(Rejection::Infinite);
    }
    if value < 0.0 {
        return Err(Rejection::Negative);
    }
    // Never NaN here; finite * 1e6 can overflow to +inf, which the saturating cast reports as i64::MAX.
    let watts = (value * watts_per_unit).round();
    let limit = limits.max_house_power.abs().0;
    if watts > limit as f64 {
        return Err(Rejection::OverLimit {
            watts: watts as i64,
            limit,
        });
    }
    // Rounding to the quantum can lift a value over a limit that is not a multiple of it.
    let quantised = Watts(watts as i64).quantise(limits.quantum_watts);
    if quantised.0 > limit {
        return Err(Rejection::OverLimit {
            watts: quantised.0,
            limit,
        });
    }
    Ok(quantised)
}

fn parse_field<'a, N: XmlNode<'a>>(f: N) -> Result<Field, Rejection> {
    let name = f.attr("name").ok_or(Rejection::Missing("name"))?;
    let raw = f.attr("value").ok_or(Rejection::Missing("value"))?;
    let value = if f.name() == "numeric" {
        FieldValue::Numeric {
            value: raw
                .trim()
                .parse()
                .map_err(|_| Rejection::BadAttribute("value"))?,
            unit: f.attr("unit").unwrap_or_default().to_owned(),
        }
    } else {
        FieldValue::Other {
            kind: f.name().to_owned(),
            value: raw.to_owned(),
        }
    };
    Ok(Field {
        name: name.to_owned(),
        value,
        quality: parse_quality(f)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::REJECTION_KINDS;
    use proptest::prelude::*;

    const ROOM: &str = "neighbourhood@rooms.grid.example";

    /// DESIGN.md's payload, whitespace removed so it compares node for node.
    const DESIGN_FIELDS: &str = "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='4711' done='true'>\
        <node nodeId='meter'><timestamp value='2026-11-24T20:00:00Z'>\
        <numeric name='Power' momentary='true' automaticReadout='true' value='1840' unit='W'/>\
        </timestamp></node></fields>";

    /// DESIGN.md's whole message, indented as people write it.
    const DESIGN_MESSAGE: &str = include_str!("../../testdata/design-message.xml");

    // XEP-0323 (v0.6) section 3 examples, the <fields/> payloads verbatim.
    const XEP_MOMENTARY: &str = "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='1' done='true'>
         <node nodeId='Device01'>
            <timestamp value='2013-03-07T16:24:30'>
               <numeric name='Temperature' momentary='true' automaticReadout='true' value='23.4' unit='°C'/> 
            </timestamp>
         </node>
      </fields>";
    const XEP_READ_ALL: &str = "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='4'>
         <node nodeId='Device01'>
            <timestamp value='2013-03-07T19:00:00'>
               <numeric name='Temperature' momentary='true' automaticReadout='true' value='23.4' unit='°C'/> 
               <numeric name='Runtime' status='true' automaticReadout='true' value='12345' unit='h'/>
               <string name='Device ID' identification='true' automaticReadout='true' value='Device01'/>
            </timestamp>
         </node>
      </fields>";
    const XEP_PEAKS: &str = "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='4'>
         <node nodeId='Device01'>
            <timestamp value='2013-03-07T19:00:00'>
               <numeric name='Temperature, Max' peak='true' automaticReadout='true' value='25.9' unit='°C'/> 
               <numeric name='Temperature, Min' peak='true' automaticReadout='true' value='18.7' unit='°C'/> 
               <numeric name='Temperature, Mean' computed='true' automaticReadout='true' value='22.5' unit='°C'/> 
            </timestamp>
         </node>
      </fields>";
    const XEP_HISTORY: &str = "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='4'>
         <node nodeId='Device01'>
            <timestamp value='2013-03-07T18:00:00'>
               <numeric name='Temperature' historicalHour='true' automaticReadout='true' value='24.5' unit='°C'/> 
            </timestamp>
            <timestamp value='2013-03-07T17:00:00'>
               <numeric name='Temperature' historicalHour='true' automaticReadout='true' value='25.1' unit='°C'/> 
            </timestamp>
            <timestamp value='2013-03-07T16:00:00'>
               <numeric name='Temperature' historicalHour='true' automaticReadout='true' value='25.2' unit='°C'/> 
            </timestamp>
            <timestamp value='2013-03-07T00:00:00'>
               <numeric name='Temperature' historicalHour='true' historicalDay='true' automaticReadout='true' value='25.2' unit='°C'/> 
            </timestamp>
         </node>
      </fields>";
    const XEP_ENERGY_POWER: &str = "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='6' done='true'>
         <node nodeId='Device04'>
            <timestamp value='2013-03-07T22:03:15'>
               <numeric name='Energy' momentary='true' automaticReadout='true' value='12345.67' unit='MWh'/> 
               <numeric name='Power' momentary='true' automaticReadout='true' value='239.4' unit='W'/> 
            </timestamp>
         </node>
      </fields>";
    /// One field of every XEP-0323 value type (section 5.4), with quality flags of section 5.7.
    const XEP_ALL_TYPES: &str = "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='9' done='1'>
         <node nodeId='Device05'>
            <timestamp value='2013-03-07T22:03:15+01:00'>
               <boolean name='Door open' momentary='true' automaticReadout='true' value='false'/>
               <date name='Installed' identification='true' manualReadout='true' value='2012-01-31'/>
               <dateTime name='Last service' status='true' value='2013-02-01T08:00:00'/>
               <time name='Shift start' status='true' value='06:30:00'/>
               <duration name='Uptime' momentary='true' automaticEstimate='true' value='P2DT3H'/>
               <int name='Phase' momentary='true' value='3'/>
               <long name='Pulses' momentary='true' warning='true' value='9223372036854775807'/>
               <enum name='Mode' status='true' dataType='ModeEnum' value='Eco'/>
               <string name='Firmware' identification='true' value='1.2.3'/>
               <numeric name='Ratio' momentary='true' value='0.5'/>
            </timestamp>
         </node>
      </fields>";

    fn limits() -> CodecLimits {
        CodecLimits::default()
    }

    fn reading(power: i64) -> Reading {
        Reading {
            power: Watts(power),
            at: Timestamp::parse_rfc3339("2026-11-24T20:00:00Z").unwrap(),
            seqnr: 4711,
            quality: Quality::AUTOMATIC_READOUT,
        }
    }

    /// A message whose `<fields/>` has attributes `fields_attrs` and holds `node`.
    fn message_with(fields_attrs: &str, node: &str) -> String {
        format!(
            "<message xmlns='jabber:client' type='chat' to='{ROOM}/bot' id='m1'><body>x</body>\
             <fields xmlns='urn:xmpp:iot:sensordata' {fields_attrs}>{node}</fields></message>"
        )
    }

    /// A well-formed reading message around one set of power-field children.
    fn message(numeric: &str) -> String {
        message_with(
            "seqnr='7' done='true'",
            &format!(
                "<node nodeId='meter'><timestamp value='2026-11-24T20:00:00Z'>{numeric}</timestamp></node>"
            ),
        )
    }

    /// Decodes through `decode_stanza` and through minidom + `decode_message`; both must agree.
    fn decode(xml: &str) -> Result<Reading, Rejection> {
        let fast = decode_stanza(xml.as_bytes(), &limits());
        if xml.len() <= limits().max_stanza_bytes {
            let slow = Element::from_reader(xml.as_bytes())
                .map_err(|e| Rejection::Malformed(e.to_string()))
                .and_then(|el| decode_message(&el, &limits()));
            assert_eq!(fast, slow, "paths disagree on {xml}");
        }
        fast
    }

    fn to_string(el: &Element) -> String {
        String::from(el)
    }

    #[test]
    fn encode_fields_is_exactly_the_design_payload() {
        let expected: Element = DESIGN_FIELDS.parse().unwrap();
        assert_eq!(encode_fields(&reading(1840)), expected);
        assert_eq!(reading_body(&reading(1840)), "1.84 kW");
    }

    #[test]
    fn export_is_a_positive_export_power_field() {
        let el = encode_fields(&reading(-350));
        let numeric = el
            .get_child("node", NS_SENSORDATA)
            .and_then(|n| n.get_child("timestamp", NS_SENSORDATA))
            .and_then(|t| t.get_child("numeric", NS_SENSORDATA))
            .unwrap();
        assert_eq!(numeric.attr("name"), Some(FIELD_EXPORT));
        assert_eq!(numeric.attr("value"), Some("350"));
        assert_eq!(numeric.attr("momentary"), Some("true"));
        assert_eq!(decode_fields(&el, &limits()), Ok(reading(-350)));
        assert_eq!(reading_body(&reading(-350)), "-0.35 kW");
    }

    #[test]
    fn encode_message_carries_type_to_id_body_and_payload() {
        let r = reading(1840);
        let m = encode_message(&r, ROOM, MessageKind::Groupchat, "r-1");
        assert!(m.is("message", NS_CLIENT));
        assert_eq!(m.attr("type"), Some("groupchat"));
        assert_eq!(m.attr("to"), Some(ROOM));
        assert_eq!(m.attr("id"), Some("r-1"));
        assert_eq!(m.get_child("body", NS_CLIENT).unwrap().text(), "1.84 kW");
        assert_eq!(
            find_fields(&m.children().cloned().collect::<Vec<_>>()),
            Some(&encode_fields(&r))
        );
        let direct = encode_message(&r, &format!("{ROOM}/bot"), MessageKind::Chat, "r-2");
        assert_eq!(direct.attr("type"), Some("chat"));
        assert_eq!(decode(&to_string(&direct)), Ok(r));
        assert_eq!(decode(DESIGN_MESSAGE), Ok(r));
    }

    #[test]
    fn typical_stanza_takes_the_fast_path() {
        let s = to_string(&encode_message(
            &reading(1840),
            ROOM,
            MessageKind::Groupchat,
            "r-1",
        ));
        assert!(fast::parse(s.as_bytes(), 8).is_some(), "{s}");
        assert!(fast::parse(DESIGN_MESSAGE.as_bytes(), 8).is_some());
        // Non-ASCII, entities, comments, prefixes: left to minidom.
        for odd in [
            message("<numeric name='Power' value='5' unit='°C'/>"),
            message("<numeric name='Power' value='5' unit='W'/><!-- c -->"),
            message("<numeric name='Power' value='&#53;' unit='W'/>"),
            DESIGN_MESSAGE
                .replace("<body>", "<x:body xmlns:x='jabber:client'>")
                .replace("</body>", "</x:body>"),
        ] {
            assert!(fast::parse(odd.as_bytes(), 8).is_none(), "{odd}");
        }
    }

    #[test]
    fn units_convert_and_values_quantise() {
        let cases = [
            ("1840", "W", 1840),
            ("1.84", "kW", 1840),
            ("0.0012", "MW", 1200),
            ("1844", "W", 1840),
            ("1845", "W", 1850),
            (" 25 ", "kW", 25_000),
            ("0", "W", 0),
            ("-0", "W", 0),
            ("+2.5e3", "W", 2500),
        ];
        for (value, unit, watts) in cases {
            let xml = message(&format!(
                "<numeric name='Power' momentary='true' value='{value}' unit='{unit}'/>"
            ));
            assert_eq!(
                decode(&xml).map(|r| r.power),
                Ok(Watts(watts)),
                "{value} {unit}"
            );
        }
        let export = message("<numeric name='Export Power' value='0.35' unit='kW'/>");
        assert_eq!(decode(&export).map(|r| r.power), Ok(Watts(-350)));
    }

    #[test]
    fn every_codec_rejection_has_a_case() {
        let power = |attrs: &str| message(&format!("<numeric name='Power' {attrs}/>"));
        let deep = format!("{}{}", "<x>".repeat(20), "</x>".repeat(20));
        let over_limit = |watts| Rejection::OverLimit {
            watts,
            limit: 25_000,
        };
        let big_body = message_with(
            "seqnr='1'",
            &format!("<node nodeId='meter'/><x>{}</x>", "a".repeat(5 * 1024)),
        );
        let big_len = big_body.len();
        let cases: Vec<(String, Rejection)> = vec![
            (power("value='NaN' unit='W'"), Rejection::NotANumber),
            (power("value='nan' unit='kW'"), Rejection::NotANumber),
            (power("value='inf' unit='W'"), Rejection::Infinite),
            (power("value='-INF' unit='W'"), Rejection::Infinite),
            (power("value='-5' unit='W'"), Rejection::Negative),
            (
                message("<numeric name='Export Power' value='-5' unit='W'/>"),
                Rejection::Negative,
            ),
            (power("value='1e300' unit='W'"), over_limit(i64::MAX)),
            (power("value='1e305' unit='MW'"), over_limit(i64::MAX)),
            (power("value='25001' unit='W'"), over_limit(25_001)),
            (power("value='26' unit='kW'"), over_limit(26_000)),
            (
                message("<numeric name='Export Power' value='30' unit='kW'/>"),
                over_limit(30_000),
            ),
            (
                power("value='5' unit='°C'"),
                Rejection::BadUnit("°C".into()),
            ),
            (
                power("value='5' unit='kw'"),
                Rejection::BadUnit("kw".into()),
            ),
            (
                power("value='5' unit='mW'"),
                Rejection::BadUnit("mW".into()),
            ),
            (
                power("value='5' unit=''"),
                Rejection::BadUnit(String::new()),
            ),
            (
                message("<numeric name='Power' value='5' unit='W'/>")
                    .replace("urn:xmpp:iot:sensordata", "urn:xmpp:iot:sensordata:1"),
                Rejection::WrongNamespace(
                    "<fields> in 'urn:xmpp:iot:sensordata:1', expected 'urn:xmpp:iot:sensordata'"
                        .into(),
                ),
            ),
            (
                message("<numeric name='Power' value='5' unit='W'/>")
                    .replace("jabber:client", "jabber:server"),
                Rejection::WrongNamespace(
                    "expected <message xmlns='jabber:client'>, got <message> in 'jabber:server'"
                        .into(),
                ),
            ),
            (
                message_with("seqnr='1'", "<node xmlns='urn:other' nodeId='meter'/>"),
                Rejection::WrongNamespace(
                    "<node> in 'urn:other', expected 'urn:xmpp:iot:sensordata'".into(),
                ),
            ),
            (
                "<message xmlns='jabber:client'><body>hi</body></message>".into(),
                Rejection::WrongNamespace(
                    "no <fields xmlns='urn:xmpp:iot:sensordata'> payload".into(),
                ),
            ),
            (
                message_with("done='true'", "<node nodeId='meter'/>"),
                Rejection::Missing("seqnr"),
            ),
            (power("unit='W'"), Rejection::Missing("value")),
            (power("value='5'"), Rejection::Missing("unit")),
            (
                message("<numeric name='Power' value='5' unit='W'/><numeric value='5' unit='W'/>"),
                Rejection::Missing("name"),
            ),
            (
                message_with(
                    "seqnr='1'",
                    "<node nodeId='meter'><numeric name='Power' value='5' unit='W'/></node>",
                ),
                Rejection::Missing("timestamp"),
            ),
            (
                message_with("seqnr='1'", "<node nodeId='meter'><timestamp/></node>"),
                Rejection::Missing("timestamp value"),
            ),
            (message_with("seqnr='1'", ""), Rejection::Missing("node")),
            (
                message_with(
                    "seqnr='1'",
                    "<node><timestamp value='2026-11-24T20:00:00Z'/></node>",
                ),
                Rejection::Missing("nodeId"),
            ),
            (
                message_with("seqnr='abc'", "<node nodeId='meter'/>"),
                Rejection::BadAttribute("seqnr"),
            ),
            (
                message_with("seqnr='-1'", "<node nodeId='meter'/>"),
                Rejection::BadAttribute("seqnr"),
            ),
            (
                power("value='12W' unit='W'"),
                Rejection::BadAttribute("value"),
            ),
            (power("value='' unit='W'"), Rejection::BadAttribute("value")),
            (
                power("value='5' unit='W' automaticReadout='yes'"),
                Rejection::BadAttribute("automaticReadout"),
            ),
            (
                message_with(
                    "seqnr='1'",
                    "<node nodeId='meter'><timestamp value='yesterday'/></node>",
                ),
                Rejection::BadAttribute("timestamp"),
            ),
            (
                message("<string name='Power' value='5'/>"),
                Rejection::BadAttribute("power field type"),
            ),
            (
                big_body,
                Rejection::Oversize {
                    size: big_len,
                    limit: 4096,
                },
            ),
            (
                "<message xmlns='jabber:client'><body>".into(),
                Rejection::Malformed(String::new()),
            ),
            ("not xml at all".into(), Rejection::Malformed(String::new())),
            (
                "<message><body/></message>".into(),
                Rejection::Malformed(String::new()),
            ),
            ("<a></b>".into(), Rejection::Malformed(String::new())),
            // minidom refuses text before the root, so the fast path must too.
            (
                format!("\n{DESIGN_MESSAGE}"),
                Rejection::Malformed(String::new()),
            ),
            (
                message(&format!(
                    "<numeric name='Power' value='5' unit='W'>{deep}</numeric>"
                )),
                Rejection::TooDeep(8),
            ),
            (
                message_with("seqnr='1'", &format!("<node nodeId='meter'/>{deep}")),
                Rejection::TooDeep(8),
            ),
            (
                message(
                    "<numeric name='Power' value='5' unit='W'/><numeric name='Power' value='6' unit='W'/>",
                ),
                Rejection::AmbiguousPowerField,
            ),
            (
                message(
                    "<numeric name='Power' value='5' unit='W'/><numeric name='Export Power' value='6' unit='W'/>",
                ),
                Rejection::AmbiguousPowerField,
            ),
            (
                message_with(
                    "seqnr='1'",
                    "<node nodeId='meter'><timestamp value='2026-11-24T20:00:00Z'/></node><node nodeId='meter'/>",
                ),
                Rejection::AmbiguousPowerField,
            ),
            (
                message("<numeric name='Temperature' value='5' unit='K'/>"),
                Rejection::NoPowerField,
            ),
            (message(""), Rejection::NoPowerField),
            (
                power("value='5' unit='W' missing='true'"),
                Rejection::Unusable,
            ),
            (power("value='5' unit='W' error='1'"), Rejection::Unusable),
            (power("missing='true'"), Rejection::Unusable),
        ];
        let mut seen = [false; REJECTION_KINDS.len()];
        for (xml, expected) in &cases {
            let got = decode(xml);
            match (&got, expected) {
                // The parser's wording is minidom's business; the kind is ours.
                (Err(Rejection::Malformed(_)), Rejection::Malformed(_)) => {}
                _ => assert_eq!(&got, &Err(expected.clone()), "{xml}"),
            }
            seen[expected.index()] = true;
        }
        let codec_kinds = REJECTION_KINDS
            .iter()
            .take_while(|k| **k != "duplicate")
            .count();
        assert!(
            seen[..codec_kinds].iter().all(|s| *s),
            "untested kinds: {:?}",
            REJECTION_KINDS
                .iter()
                .zip(seen)
                .filter(|(_, s)| !s)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn oversize_is_also_caught_on_parsed_messages() {
        let mut m = encode_message(&reading(1840), ROOM, MessageKind::Groupchat, "r-1");
        m.append_child(
            Element::builder("x", "urn:x")
                .append("a".repeat(5000))
                .build(),
        );
        match decode_message(&m, &limits()) {
            Err(Rejection::Oversize { size, limit: 4096 }) => assert!(size > 5000),
            other => panic!("{other:?}"),
        }
        // The estimate is a lower bound: what fits on the wire passes.
        let s = to_string(&encode_message(
            &reading(1840),
            ROOM,
            MessageKind::Groupchat,
            "r-1",
        ));
        let tight = CodecLimits {
            max_stanza_bytes: s.len(),
            ..limits()
        };
        let el: Element = s.parse().unwrap();
        assert_eq!(decode_message(&el, &tight), Ok(reading(1840)));
        assert_eq!(decode_stanza(s.as_bytes(), &tight), Ok(reading(1840)));
        let too_tight = CodecLimits {
            max_stanza_bytes: s.len() - 1,
            ..limits()
        };
        assert_eq!(
            decode_stanza(s.as_bytes(), &too_tight),
            Err(Rejection::Oversize {
                size: s.len(),
                limit: s.len() - 1
            })
        );
    }

    #[test]
    fn typed_message_payloads_decode_like_stanzas() {
        use xmpp_parsers::message::Message;
        let r = reading(-1230);
        let mut el = encode_message(&r, ROOM, MessageKind::Groupchat, "r-1");
        el.append_child(Element::bare("occupant-id", "urn:xmpp:occupant-id:0"));
        let msg = Message::try_from(el.clone()).unwrap();
        assert_eq!(find_fields(&msg.payloads), Some(&encode_fields(&r)));
        assert_eq!(decode_payloads(&msg.payloads, &limits()), Ok(r));

        let mut two = msg.payloads.clone();
        two.push(encode_fields(&r));
        assert_eq!(
            decode_payloads(&two, &limits()),
            Err(Rejection::AmbiguousPowerField)
        );
        assert!(matches!(
            decode_payloads(&msg.payloads[1..], &limits()),
            Err(Rejection::WrongNamespace(_))
        ));
        let mut big = msg.payloads.clone();
        big.push(
            Element::builder("x", "urn:x")
                .append("a".repeat(5000))
                .build(),
        );
        assert!(matches!(
            decode_payloads(&big, &limits()),
            Err(Rejection::Oversize { limit: 4096, .. })
        ));
        let mut deep = Element::bare("x", "urn:x");
        for _ in 0..8 {
            deep = Element::builder("x", "urn:x").append(deep).build();
        }
        let mut nested = msg.payloads.clone();
        nested.push(deep);
        assert_eq!(
            decode_payloads(&nested, &limits()),
            Err(Rejection::TooDeep(8))
        );
    }

    #[test]
    fn forged_extras_do_not_break_parsing() {
        let r = reading(1840);
        let extras = [
            "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='dGhpcyBpcyBhIHRlc3Q='/>",
            "<delay xmlns='urn:xmpp:delay' from='x' stamp='2026-11-24T20:00:01Z'/>",
            "<x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/></x>",
            "<fields xmlns='urn:example:not-sensordata' seqnr='1'/>",
            "<stanza-id xmlns='urn:xmpp:sid:0' id='1' by='room@x'/>",
        ];
        let base = to_string(&encode_message(&r, ROOM, MessageKind::Groupchat, "r-1"));
        for extra in extras {
            let xml = base.replace("</message>", &format!("{extra}</message>"));
            assert_eq!(decode(&xml), Ok(r), "{xml}");
            let before = base.replacen("<body>", &format!("{extra}<body>"), 1);
            assert_eq!(decode(&before), Ok(r), "{before}");
        }
        // Unknown attributes and foreign children inside the payload are ignored too.
        let xml = message(
            "<numeric name='Power' momentary='true' value='5' unit='W' foo='bar'/>\
             <boolean name='Door' value='true'/><foo xmlns='urn:x' name='Power'/>",
        );
        assert_eq!(decode(&xml).map(|r| r.power), Ok(Watts(10)));
    }

    #[test]
    fn xep_0323_examples_parse() {
        let p = |s: &str| parse_sensor_data(&s.parse::<Element>().unwrap(), &limits()).unwrap();
        let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();

        let m = p(XEP_MOMENTARY);
        assert_eq!((m.seqnr, m.done), (1, true));
        assert_eq!(m.nodes.len(), 1);
        assert_eq!(m.nodes[0].node_id, "Device01");
        assert_eq!(m.nodes[0].timestamps[0].at, t("2013-03-07T16:24:30Z"));
        let temp = &m.nodes[0].timestamps[0].fields[0];
        assert_eq!(temp.name, "Temperature");
        assert_eq!(
            temp.value,
            FieldValue::Numeric {
                value: 23.4,
                unit: "°C".into()
            }
        );
        assert_eq!(temp.quality, Quality::AUTOMATIC_READOUT);

        let all = p(XEP_READ_ALL);
        assert_eq!((all.seqnr, all.done), (4, false));
        let f = &all.nodes[0].timestamps[0].fields;
        assert_eq!(f.len(), 3);
        assert_eq!(
            f[1].value,
            FieldValue::Numeric {
                value: 12345.0,
                unit: "h".into()
            }
        );
        assert_eq!(
            f[2].value,
            FieldValue::Other {
                kind: "string".into(),
                value: "Device01".into()
            }
        );

        let peaks = p(XEP_PEAKS);
        let names: Vec<_> = peaks.nodes[0].timestamps[0]
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["Temperature, Max", "Temperature, Min", "Temperature, Mean"]
        );

        let hist = p(XEP_HISTORY);
        let stamps: Vec<_> = hist.nodes[0].timestamps.iter().map(|t| t.at).collect();
        assert_eq!(
            stamps,
            [
                "2013-03-07T18:00:00Z",
                "2013-03-07T17:00:00Z",
                "2013-03-07T16:00:00Z",
                "2013-03-07T00:00:00Z"
            ]
            .map(t)
        );

        let types = p(XEP_ALL_TYPES);
        assert!(types.done);
        let ts = &types.nodes[0].timestamps[0];
        assert_eq!(ts.at, t("2013-03-07T21:03:15Z"));
        let kinds: Vec<_> = ts
            .fields
            .iter()
            .map(|f| match &f.value {
                FieldValue::Numeric { .. } => "numeric",
                FieldValue::Other { kind, .. } => kind.as_str(),
            })
            .collect();
        let mut sorted = kinds.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, FIELD_KINDS);
        assert_eq!(ts.fields[4].quality, Quality::AUTOMATIC_ESTIMATE);
        assert_eq!(ts.fields[6].quality, Quality::WARNING);
        assert_eq!(ts.fields[1].quality, Quality::MANUAL_READOUT);
        assert_eq!(
            ts.fields[9].value,
            FieldValue::Numeric {
                value: 0.5,
                unit: String::new()
            }
        );

        // The XEP's Energy + Power example is a valid reading (239.4 W quantised to 240 W).
        let energy: Element = XEP_ENERGY_POWER.parse().unwrap();
        assert_eq!(p(XEP_ENERGY_POWER).nodes[0].timestamps[0].fields.len(), 2);
        assert_eq!(
            decode_fields(&energy, &limits()),
            Ok(Reading {
                power: Watts(240),
                at: t("2013-03-07T22:03:15Z"),
                seqnr: 6,
                quality: Quality::AUTOMATIC_READOUT,
            })
        );
        // The others carry no power field.
        for x in [XEP_MOMENTARY, XEP_READ_ALL, XEP_PEAKS] {
            assert_eq!(
                decode_fields(&x.parse().unwrap(), &limits()),
                Err(Rejection::NoPowerField)
            );
        }
        assert_eq!(
            decode_fields(&XEP_HISTORY.parse().unwrap(), &limits()),
            Err(Rejection::AmbiguousPowerField)
        );
    }

    #[test]
    fn generic_parse_rejects_what_it_cannot_read() {
        let p = |s: &str| parse_sensor_data(&s.parse::<Element>().unwrap(), &limits());
        assert_eq!(
            p("<fields xmlns='urn:xmpp:iot:sensordata' seqnr='1' done='maybe'/>"),
            Err(Rejection::BadAttribute("done"))
        );
        assert_eq!(
            p(
                "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='1'><node nodeId='a'><timestamp value='2013-03-07T16:24:30'><int name='n'/></timestamp></node></fields>"
            ),
            Err(Rejection::Missing("value"))
        );
        assert_eq!(
            p(
                "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='1'><node nodeId='a'><timestamp value='2013-03-07T16:24:30'><numeric name='n' value='x'/></timestamp></node></fields>"
            ),
            Err(Rejection::BadAttribute("value"))
        );
        assert!(matches!(
            p("<fields xmlns='urn:other' seqnr='1'/>"),
            Err(Rejection::WrongNamespace(_))
        ));
        let deep = format!(
            "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='1'>{}{}</fields>",
            "<x>".repeat(20),
            "</x>".repeat(20)
        );
        assert_eq!(p(&deep), Err(Rejection::TooDeep(8)));
        assert_eq!(
            p("<fields xmlns='urn:xmpp:iot:sensordata'/>"),
            Err(Rejection::Missing("seqnr"))
        );
    }

    /// Any string XML can carry (minidom's writer panics on other control characters).
    const XML_TEXT: &str = "[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\u{FFFE}\u{FFFF}]{0,24}";

    fn arb_reading() -> impl Strategy<Value = Reading> {
        let usable = (Quality::MISSING.0 | Quality::ERROR.0) ^ ((1 << Quality::NAMES.len()) - 1);
        (
            -2_500i64..=2_500,
            -2_000_000_000_000i64..8_000_000_000_000,
            any::<u64>(),
            any::<u32>(),
        )
            .prop_map(move |(p, at, seqnr, q)| Reading {
                power: Watts(p * 10),
                at: Timestamp(at),
                seqnr,
                quality: Quality(q & usable),
            })
    }

    proptest! {
        #[test]
        fn round_trip(r in arb_reading()) {
            let fields = encode_fields(&r);
            prop_assert_eq!(decode_fields(&fields, &limits()), Ok(r));
            let m = encode_message(&r, ROOM, MessageKind::Groupchat, "id-1");
            prop_assert_eq!(decode_message(&m, &limits()), Ok(r));
            let bytes = to_string(&m);
            prop_assert!(fast::parse(bytes.as_bytes(), 8).is_some());
            prop_assert_eq!(decode_stanza(bytes.as_bytes(), &limits()), Ok(r));
        }

        #[test]
        fn decoded_readings_are_in_range(value in "[-+0-9.eE]{0,12}|NaN|inf", unit in "W|kW|MW", export in any::<bool>()) {
            let name = if export { FIELD_EXPORT } else { FIELD_POWER };
            let xml = message(&format!("<numeric name='{name}' value='{value}' unit='{unit}'/>"));
            if let Ok(r) = decode(&xml) {
                prop_assert!(r.power.abs() <= Watts(25_000));
                prop_assert_eq!(r.power.0 % 10, 0);
                prop_assert!(!export || r.power.0 <= 0);
                prop_assert!(export || r.power.0 >= 0);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_stanza(&bytes, &limits());
        }

        #[test]
        fn arbitrary_attribute_strings_never_panic(
            seqnr in XML_TEXT, at in XML_TEXT, value in XML_TEXT, unit in XML_TEXT,
            name in XML_TEXT, flag in XML_TEXT,
        ) {
            let numeric = Element::builder("numeric", NS_SENSORDATA)
                .attr(xml_ncname!("name").to_owned(), name)
                .attr(xml_ncname!("value").to_owned(), value)
                .attr(xml_ncname!("unit").to_owned(), unit)
                .attr(xml_ncname!("automaticReadout").to_owned(), flag)
                .build();
            let ts = Element::builder("timestamp", NS_SENSORDATA)
                .attr(xml_ncname!("value").to_owned(), at)
                .append(numeric)
                .build();
            let node = Element::builder("node", NS_SENSORDATA)
                .attr(xml_ncname!("nodeId").to_owned(), "meter")
                .append(ts)
                .build();
            let fields = Element::builder("fields", NS_SENSORDATA)
                .attr(xml_ncname!("seqnr").to_owned(), seqnr)
                .append(node)
                .build();
            let _ = parse_sensor_data(&fields, &limits());
            let m = Element::builder("message", NS_CLIENT).append(fields).build();
            let direct = decode_message(&m, &limits());
            prop_assert_eq!(decode(&to_string(&m)), direct);
        }

        /// Mutated stanzas: whenever the fast path accepts one, minidom agrees on the outcome.
        #[test]
        fn fast_path_agrees_with_minidom(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(
                vec![' ', '\n', '\t', '<', '>', '/', '=', '\'', '"', '&', ';', ':', 'x', '-', '1', 'e', '.', '!', '?', ']'],
            )), 0..4),
            pretty in any::<bool>(),
        ) {
            let base = if pretty {
                DESIGN_MESSAGE.to_string()
            } else {
                to_string(&encode_message(&reading(1840), ROOM, MessageKind::Groupchat, "r-1"))
            };
            let mut s: Vec<u8> = base.into_bytes();
            for (at, op, c) in edits {
                let i = at.index(s.len() + 1);
                match op {
                    0 if i < s.len() => { s.remove(i); }
                    1 => s.insert(i, c as u8),
                    _ if i < s.len() => s[i] = c as u8,
                    _ => {}
                }
            }
            let fast_result = fast::parse(&s, 8).map(|doc| decode_message_node(doc.root(), &limits()));
            if let Some(fast_result) = fast_result {
                let slow = Element::from_reader(&s[..])
                    .map_err(|e| Rejection::Malformed(e.to_string()))
                    .and_then(|el| decode_message(&el, &limits()));
                prop_assert_eq!(fast_result, slow, "{}", String::from_utf8_lossy(&s));
            }
        }
    }

    /// Throughput of `decode_stanza` on a typical stanza; run with
    /// `cargo test --release -p gridmuc-core decode_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn decode_throughput() {
        use std::time::Instant;
        let stanzas: Vec<String> = (0..1024)
            .map(|i| {
                let mut r = reading(i * 10);
                r.seqnr = 1_000_000 + i as u64;
                to_string(&encode_message(
                    &r,
                    ROOM,
                    MessageKind::Groupchat,
                    &format!("r-{i}"),
                ))
            })
            .collect();
        let len = stanzas.iter().map(String::len).sum::<usize>() / stanzas.len();
        let n = 2_000_000;
        let run = |label: &str, n: usize, f: &dyn Fn(&[u8]) -> Result<Reading, Rejection>| {
            // On-CPU time of this thread (the machine is shared), wall clock as a fallback.
            let cpu_ns = || {
                std::fs::read_to_string("/proc/thread-self/schedstat")
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            };
            let (start, cpu_start) = (Instant::now(), cpu_ns());
            let mut sum = 0i64;
            for i in 0..n {
                sum += f(stanzas[i % stanzas.len()].as_bytes())
                    .map(|r| r.power.0)
                    .unwrap_or(-1);
            }
            let wall = start.elapsed().as_nanos() as f64 / n as f64;
            let ns = match (cpu_start, cpu_ns()) {
                (Some(a), Some(b)) => (b - a) as f64 / n as f64,
                _ => wall,
            };
            println!(
                "{label}: {ns:.0} ns/stanza on-CPU ({wall:.0} wall; {:.0}/s, {len} B avg, checksum {sum})",
                1e9 / ns
            );
        };
        run("decode_stanza (fast path)", n, &|b| {
            decode_stanza(b, &limits())
        });
        run("  of which fast::parse", n, &|b| {
            let doc = fast::parse(b, 8).ok_or(Rejection::Late)?;
            Ok(reading(doc.root().name().len() as i64))
        });
        run("  of which timestamp parse", n, &|_| {
            let t = Timestamp::parse_rfc3339("2026-11-24T20:00:00Z").ok_or(Rejection::Late)?;
            Ok(reading(t.0 % 7))
        });
        run("minidom parse + decode_message", n / 10, &|b| {
            Element::from_reader(b)
                .map_err(|e| Rejection::Malformed(e.to_string()))
                .and_then(|el| decode_message(&el, &limits()))
        });
    }
}
