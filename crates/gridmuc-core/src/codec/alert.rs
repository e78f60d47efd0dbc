//! PLACEHOLDER signatures for the alert payload codec (implementation in progress).

use crate::alert::Alert;
use crate::reject::Rejection;
use minidom::Element;

/// Builds `<alert xmlns='urn:gridmuc:alert:0' …/>`.
pub fn encode_alert(_alert: &Alert) -> Element {
    todo!()
}

/// Parses an alert payload.
pub fn decode_alert(_el: &Element) -> Result<Alert, Rejection> {
    todo!()
}
