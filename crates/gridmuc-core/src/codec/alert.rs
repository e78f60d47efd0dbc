//! Alert payload codec: `<alert xmlns='urn:gridmuc:alert:0' …/>`, so programs in the room
//! read the bot's alerts without parsing the human body.

use super::NS_ALERT;
use crate::alert::{Alert, AlertKind, AlertState, Severity};
use crate::nick::RoomNick;
use crate::reject::Rejection;
use crate::time::Timestamp;
use crate::units::Watts;
use minidom::Element;
use minidom::rxml::xml_ncname;

/// Builds `<alert xmlns='urn:gridmuc:alert:0' kind severity state at value threshold unit='W' [nick]/>`.
pub fn encode_alert(alert: &Alert) -> Element {
    let el = Element::builder("alert", NS_ALERT)
        .attr(xml_ncname!("kind").to_owned(), alert.kind.as_str())
        .attr(xml_ncname!("severity").to_owned(), alert.severity.as_str())
        .attr(xml_ncname!("state").to_owned(), alert.state.as_str())
        .attr(xml_ncname!("at").to_owned(), alert.at.to_rfc3339())
        .attr(xml_ncname!("value").to_owned(), alert.value.0.to_string())
        .attr(
            xml_ncname!("threshold").to_owned(),
            alert.threshold.0.to_string(),
        )
        .attr(xml_ncname!("unit").to_owned(), "W");
    match &alert.nick {
        Some(nick) => el.attr(xml_ncname!("nick").to_owned(), nick.as_str()),
        None => el,
    }
    .build()
}

/// Parses an alert payload back into an [`Alert`], refusing anything [`encode_alert`] would not produce.
pub fn decode_alert(el: &Element) -> Result<Alert, Rejection> {
    if !el.is("alert", NS_ALERT) {
        return Err(Rejection::WrongNamespace(format!(
            "expected <alert xmlns='{NS_ALERT}'>, got <{}> in '{}'",
            el.name(),
            el.ns()
        )));
    }
    let attr = |name: &'static str| el.attr(name).ok_or(Rejection::Missing(name));
    let kind = AlertKind::parse(attr("kind")?).ok_or(Rejection::BadAttribute("kind"))?;
    let severity = Severity::parse(attr("severity")?).ok_or(Rejection::BadAttribute("severity"))?;
    let state = AlertState::parse(attr("state")?).ok_or(Rejection::BadAttribute("state"))?;
    let at = Timestamp::parse_rfc3339(attr("at")?).ok_or(Rejection::BadAttribute("at"))?;
    let unit = attr("unit")?;
    if unit != "W" {
        return Err(Rejection::BadUnit(unit.to_owned()));
    }
    let watts = |name: &'static str| {
        attr(name)?
            .parse()
            .map(Watts)
            .map_err(|_| Rejection::BadAttribute(name))
    };
    let nick = el
        .attr("nick")
        .map(|n| RoomNick::new(n).map_err(|_| Rejection::BadAttribute("nick")))
        .transpose()?;
    Ok(Alert {
        kind,
        severity,
        state,
        at,
        nick,
        value: watts("value")?,
        threshold: watts("threshold")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn overload() -> Alert {
        Alert {
            kind: AlertKind::Overload,
            severity: Severity::Critical,
            state: AlertState::Raised,
            at: Timestamp::parse_rfc3339("2026-11-24T20:00:00Z").unwrap(),
            nick: None,
            value: Watts(412_300),
            threshold: Watts(400_000),
        }
    }

    #[test]
    fn encodes_the_design_payload() {
        let expected: Element =
            "<alert xmlns='urn:gridmuc:alert:0' kind='overload' severity='critical' \
            state='raised' at='2026-11-24T20:00:00Z' value='412300' threshold='400000' unit='W'/>"
                .parse()
                .unwrap();
        assert_eq!(encode_alert(&overload()), expected);
        let spike = Alert {
            kind: AlertKind::HouseSpike,
            nick: Some(RoomNick::new("amber-otter-4821").unwrap()),
            ..overload()
        };
        let el = encode_alert(&spike);
        assert_eq!(el.attr("kind"), Some("house-spike"));
        assert_eq!(el.attr("nick"), Some("amber-otter-4821"));
        assert_eq!(decode_alert(&el), Ok(spike));
    }

    #[test]
    fn refuses_what_it_did_not_write() {
        let with = |attr: &str, value: &str| {
            let mut s = String::from(&encode_alert(&overload()));
            let old = format!("{attr}='{}'", encode_alert(&overload()).attr(attr).unwrap());
            s = s.replace(&old, &format!("{attr}='{value}'"));
            decode_alert(&s.parse().unwrap())
        };
        assert_eq!(with("kind", "fire"), Err(Rejection::BadAttribute("kind")));
        assert_eq!(
            with("severity", "CRITICAL"),
            Err(Rejection::BadAttribute("severity"))
        );
        assert_eq!(with("state", "open"), Err(Rejection::BadAttribute("state")));
        assert_eq!(with("at", "now"), Err(Rejection::BadAttribute("at")));
        assert_eq!(
            with("value", "4.1e5"),
            Err(Rejection::BadAttribute("value"))
        );
        assert_eq!(
            with("threshold", ""),
            Err(Rejection::BadAttribute("threshold"))
        );
        assert_eq!(with("unit", "kW"), Err(Rejection::BadUnit("kW".into())));
        let nick = "<alert xmlns='urn:gridmuc:alert:0' kind='overload' severity='info' state='cleared' \
            at='2026-11-24T20:00:00Z' value='1' threshold='2' unit='W' nick='a/b'/>";
        assert_eq!(
            decode_alert(&nick.parse().unwrap()),
            Err(Rejection::BadAttribute("nick"))
        );
        let missing = "<alert xmlns='urn:gridmuc:alert:0' severity='info' state='cleared' \
            at='2026-11-24T20:00:00Z' value='1' threshold='2' unit='W'/>";
        assert_eq!(
            decode_alert(&missing.parse().unwrap()),
            Err(Rejection::Missing("kind"))
        );
        let wrong_ns = String::from(&encode_alert(&overload())).replace("alert:0", "alert:1");
        assert!(matches!(
            decode_alert(&wrong_ns.parse().unwrap()),
            Err(Rejection::WrongNamespace(_))
        ));
    }

    fn arb_alert() -> impl Strategy<Value = Alert> {
        (
            prop::sample::select(AlertKind::ALL.to_vec()),
            prop::sample::select(vec![Severity::Info, Severity::Warning, Severity::Critical]),
            prop::sample::select(vec![AlertState::Raised, AlertState::Cleared]),
            -8_000_000_000_000i64..8_000_000_000_000,
            proptest::option::of("[a-z]{1,10}-[a-z]{1,10}-[0-9]{4}"),
            any::<i64>(),
            any::<i64>(),
        )
            .prop_map(
                |(kind, severity, state, at, nick, value, threshold)| Alert {
                    kind,
                    severity,
                    state,
                    at: Timestamp(at),
                    nick: nick.map(|n| RoomNick::new(n).unwrap()),
                    value: Watts(value),
                    threshold: Watts(threshold),
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(alert in arb_alert()) {
            let el = encode_alert(&alert);
            prop_assert_eq!(decode_alert(&el), Ok(alert.clone()));
            let reparsed: Element = String::from(&el).parse().unwrap();
            prop_assert_eq!(decode_alert(&reparsed), Ok(alert));
        }
    }
}
