//! Masked mode over the room: the bot learns only each interval's neighbourhood sum.
//!
//! The sans-IO protocol is `gridmuc-mask`; this module moves its messages through the MUC
//! room and keeps the clock. Every protocol message travels as
//! `<mask xmlns='urn:gridmuc:mask:0' [cohort='…'] [first-round='…']>base64</mask>` beside a
//! body for people that never contains a reading. Routing, all through the room (never to
//! a real JID):
//!
//! | step | from → to | stanza |
//! |---|---|---|
//! | enrolment call | bot → room | groupchat `<rekey/>`: members of the old cohort rotate their nickname |
//! | key | meter → bot | PM through the room, right after every join |
//! | roster | bot → room | groupchat, with `cohort` and `first-round` |
//! | share upload | meter → bot | PM |
//! | share bundle | bot → meter | PM to the member's nickname |
//! | masked reading | meter → bot | PM, one per round (round = interval start / interval) |
//! | unmask request | bot → room | groupchat, after the interval's grace time |
//! | unmask answer | meter → bot | PM |
//!
//! A cohort masks [`MaskedBotConfig::cohort_rounds`] rounds; then the bot calls a new
//! enrolment, every member leaves and rejoins under a fresh nickname with a fresh key
//! (nickname rotation *is* re-enrolment), and rounds resume from the new roster's first
//! round. A meter that joins while a cohort runs sends its key at once and masks from the
//! next enrolment on.

pub mod bot;
pub mod meter;

pub use bot::{MaskedBotConfig, MaskedBotEvent, MaskedBotReport, run_masked_bot};
pub use meter::{MaskedMeterConfig, MaskedMeterEvent, MaskedMeterReport, run_masked_meter};

use gridmuc_core::{Timestamp, Watts};
use gridmuc_mask::{DpConfig, MaskError, MaskMessage, WireError};
use minidom::Element;
use minidom::rxml::xml_ncname;
use std::time::Duration;

/// Namespace of the masked-mode payload and of the enrolment call.
pub const NS_MASK: &str = "urn:gridmuc:mask:0";

/// A protocol message as carried in a stanza, with what the XMPP layer routes by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskPayload {
    /// The protocol message.
    pub message: MaskMessage,
    /// Cohort the message belongs to, so a meter ignores traffic of cohorts it is not in
    /// (absent on key announcements, which come before any cohort).
    pub cohort: Option<[u8; 16]>,
    /// On a roster: the first round the new cohort masks.
    pub first_round: Option<u64>,
}

/// Why a `<mask>` element could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// The base64 text is not a protocol message.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// An attribute is not what [`encode`] writes.
    #[error("bad attribute {0}")]
    BadAttribute(&'static str),
}

/// Builds the `<mask>` element for a stanza.
pub fn encode(payload: &MaskPayload) -> Element {
    let mut el = Element::builder("mask", NS_MASK);
    if let Some(cohort) = &payload.cohort {
        el = el.attr(xml_ncname!("cohort").to_owned(), hex(cohort));
    }
    if let Some(round) = payload.first_round {
        el = el.attr(xml_ncname!("first-round").to_owned(), round.to_string());
    }
    el.append(payload.message.to_base64()).build()
}

/// The `<mask>` payload of a stanza: `None` if there is none, an error if it is malformed.
pub fn decode(payloads: &[Element]) -> Option<Result<MaskPayload, PayloadError>> {
    let el = payloads.iter().find(|e| e.is("mask", NS_MASK))?;
    Some(decode_element(el))
}

fn decode_element(el: &Element) -> Result<MaskPayload, PayloadError> {
    let cohort = el
        .attr("cohort")
        .map(|c| unhex(c).ok_or(PayloadError::BadAttribute("cohort")))
        .transpose()?;
    let first_round = el
        .attr("first-round")
        .map(|r| {
            r.parse()
                .map_err(|_| PayloadError::BadAttribute("first-round"))
        })
        .transpose()?;
    Ok(MaskPayload {
        message: MaskMessage::from_base64(&el.text())?,
        cohort,
        first_round,
    })
}

/// The enrolment call `<rekey xmlns='urn:gridmuc:mask:0'/>`: members of a running cohort
/// rotate their nickname and announce a fresh key.
pub fn rekey_element() -> Element {
    Element::builder("rekey", NS_MASK).build()
}

/// Whether a stanza carries the enrolment call.
pub fn is_rekey(payloads: &[Element]) -> bool {
    payloads.iter().any(|e| e.is("rekey", NS_MASK))
}

/// Differential-privacy settings; meters and bot must agree (the bot only reports the noise).
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSettings {
    /// Privacy budget per interval.
    pub epsilon: f64,
    /// Change in one house's reading the budget hides, in watts.
    pub sensitivity_watts: i64,
}

impl DpSettings {
    /// The validated protocol configuration.
    pub fn to_config(self) -> Result<DpConfig, MaskError> {
        DpConfig::new(self.epsilon, Watts(self.sensitivity_watts))
    }
}

/// The round (interval index) an interval start belongs to: the same on every meter and the bot.
pub fn round_of(at: Timestamp, interval: Duration) -> u64 {
    let p = crate::meter::interval_ms(interval);
    u64::try_from(at.millis().div_euclid(p)).unwrap_or(0)
}

/// Start of round `round`.
pub fn round_start(round: u64, interval: Duration) -> Timestamp {
    let p = crate::meter::interval_ms(interval);
    Timestamp(i64::try_from(round).unwrap_or(i64::MAX).saturating_mul(p))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridmuc_mask::{KeyAnnouncement, MaskedReading};

    #[test]
    fn payload_roundtrips_with_attributes() {
        let p = MaskPayload {
            message: MaskMessage::Masked(MaskedReading {
                round: 7,
                from: 3,
                value: 0xdead_beef,
            }),
            cohort: Some([0xa5; 16]),
            first_round: Some(42),
        };
        let el = encode(&p);
        let xml = String::from(&el);
        assert!(
            xml.contains("cohort='a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5'"),
            "{xml}"
        );
        assert!(xml.contains("first-round='42'"), "{xml}");
        assert_eq!(decode(&[el]), Some(Ok(p)));
        let key = MaskPayload {
            message: MaskMessage::Key(KeyAnnouncement { key: [9; 32] }),
            cohort: None,
            first_round: None,
        };
        assert_eq!(decode(&[encode(&key)]), Some(Ok(key)));
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let bad = |xml: &str| decode(&[xml.parse::<Element>().unwrap_or_else(|_| unreachable!())]);
        assert_eq!(
            bad("<mask xmlns='urn:gridmuc:mask:0'>!!</mask>"),
            Some(Err(PayloadError::Wire(WireError::Base64)))
        );
        assert_eq!(
            bad("<mask xmlns='urn:gridmuc:mask:0' cohort='zz'>AQ</mask>"),
            Some(Err(PayloadError::BadAttribute("cohort")))
        );
        assert_eq!(
            bad("<mask xmlns='urn:gridmuc:mask:0' first-round='-1'>AQ</mask>"),
            Some(Err(PayloadError::BadAttribute("first-round")))
        );
        assert_eq!(bad("<other xmlns='urn:gridmuc:mask:0'/>"), None);
        assert!(is_rekey(&[rekey_element()]));
    }

    #[test]
    fn rounds_are_interval_indices() {
        let i = Duration::from_secs(5);
        assert_eq!(round_of(Timestamp(10_000), i), 2);
        assert_eq!(round_of(Timestamp(14_999), i), 2);
        assert_eq!(round_start(2, i), Timestamp(10_000));
    }
}
