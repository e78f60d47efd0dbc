//! Interval summary payload: `<summary xmlns='urn:gridmuc:summary:0' …/>` beside the body of
//! every interval post, so programs in the room (the live page) read the figures a bot
//! published without parsing the human body.

use super::NS_SUMMARY;
use crate::reject::Rejection;
use crate::stats::IntervalStats;
use crate::time::{Millis, Timestamp};
use crate::units::Watts;
use minidom::Element;
use minidom::rxml::xml_ncname;
use serde::Serialize;

/// How the bot learnt the figures: from each nickname's readings, or only as Prio3 aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SummaryMode {
    /// Readings direct or broadcast: the bot saw each nickname's reading; figures are exact.
    Pseudonymous,
    /// Private mode: total and count exact, median and p95 estimated from the histogram.
    Private,
}

impl SummaryMode {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            SummaryMode::Pseudonymous => "pseudonymous",
            SummaryMode::Private => "private",
        }
    }

    fn parse(s: &str) -> Option<SummaryMode> {
        match s {
            "pseudonymous" => Some(SummaryMode::Pseudonymous),
            "private" => Some(SummaryMode::Private),
            _ => None,
        }
    }
}

/// Private mode's house-spike count, published with its interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SpikeSummary {
    /// Houses at or above the threshold.
    pub houses: u64,
    /// The threshold the leader published.
    pub threshold: Watts,
}

/// One published interval, as the `<summary/>` element carries it; watts are whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// How the figures were learnt.
    pub mode: SummaryMode,
    /// Start of the interval.
    pub start: Timestamp,
    /// Length of the interval.
    pub length: Millis,
    /// Meters (nicknames or Prio3 reports) counted.
    pub meters: u64,
    /// Neighbourhood net load.
    pub total: Watts,
    /// Mean per meter.
    pub mean: Watts,
    /// Median per meter (estimated within a bucket in private mode).
    pub median: Watts,
    /// 95th percentile per meter (estimated within a bucket in private mode).
    pub p95: Watts,
    /// The transformer's rating the overload detector works against.
    pub rating: Watts,
    /// 0 when first published; raised each time late readings amend the interval.
    pub revision: u32,
    /// Private mode's house-spike count, if the leader published one.
    pub spikes: Option<SpikeSummary>,
}

/// Watts of a statistic, rounded to whole watts (saturating; NaN as 0).
pub fn whole_watts(w: f64) -> Watts {
    // `as` saturates at the bounds and maps NaN to 0, which is what a display wants.
    Watts(w.round() as i64)
}

impl Summary {
    /// The plain bot's summary of `stats` against `rating`.
    pub fn from_stats(stats: &IntervalStats, rating: Watts) -> Summary {
        Summary {
            mode: SummaryMode::Pseudonymous,
            start: stats.start,
            length: stats.length,
            meters: u64::try_from(stats.meters).unwrap_or(u64::MAX),
            total: stats.total,
            mean: whole_watts(stats.mean),
            median: whole_watts(stats.median),
            p95: whole_watts(stats.p95),
            rating,
            revision: stats.revision,
            spikes: None,
        }
    }
}

/// Builds `<summary xmlns='urn:gridmuc:summary:0' mode start length meters total mean median p95
/// rating unit='W' [revision] [spikes spike_threshold]/>`.
pub fn encode_summary(s: &Summary) -> Element {
    let watts = |w: Watts| w.0.to_string();
    let mut el = Element::builder("summary", NS_SUMMARY)
        .attr(xml_ncname!("mode").to_owned(), s.mode.as_str())
        .attr(xml_ncname!("start").to_owned(), s.start.to_rfc3339())
        .attr(xml_ncname!("length").to_owned(), s.length.to_string())
        .attr(xml_ncname!("meters").to_owned(), s.meters.to_string())
        .attr(xml_ncname!("total").to_owned(), watts(s.total))
        .attr(xml_ncname!("mean").to_owned(), watts(s.mean))
        .attr(xml_ncname!("median").to_owned(), watts(s.median))
        .attr(xml_ncname!("p95").to_owned(), watts(s.p95))
        .attr(xml_ncname!("rating").to_owned(), watts(s.rating))
        .attr(xml_ncname!("unit").to_owned(), "W");
    if s.revision > 0 {
        el = el.attr(xml_ncname!("revision").to_owned(), s.revision.to_string());
    }
    if let Some(spikes) = &s.spikes {
        el = el
            .attr(xml_ncname!("spikes").to_owned(), spikes.houses.to_string())
            .attr(
                xml_ncname!("spike_threshold").to_owned(),
                watts(spikes.threshold),
            );
    }
    el.build()
}

/// Parses a summary payload back, refusing anything [`encode_summary`] would not produce.
pub fn decode_summary(el: &Element) -> Result<Summary, Rejection> {
    if !el.is("summary", NS_SUMMARY) {
        return Err(Rejection::WrongNamespace(format!(
            "expected <summary xmlns='{NS_SUMMARY}'>, got <{}> in '{}'",
            el.name(),
            el.ns()
        )));
    }
    let attr = |name: &'static str| el.attr(name).ok_or(Rejection::Missing(name));
    fn number<T: std::str::FromStr>(el: &Element, name: &'static str) -> Result<T, Rejection> {
        el.attr(name)
            .ok_or(Rejection::Missing(name))?
            .parse()
            .map_err(|_| Rejection::BadAttribute(name))
    }
    let unit = attr("unit")?;
    if unit != "W" {
        return Err(Rejection::BadUnit(unit.to_owned()));
    }
    let watts = |name: &'static str| number(el, name).map(Watts);
    let spikes = match el.attr("spikes") {
        None => None,
        Some(_) => Some(SpikeSummary {
            houses: number(el, "spikes")?,
            threshold: watts("spike_threshold")?,
        }),
    };
    let revision = match el.attr("revision") {
        None => 0,
        Some(_) => number(el, "revision")?,
    };
    Ok(Summary {
        mode: SummaryMode::parse(attr("mode")?).ok_or(Rejection::BadAttribute("mode"))?,
        start: Timestamp::parse_rfc3339(attr("start")?).ok_or(Rejection::BadAttribute("start"))?,
        length: number(el, "length")?,
        meters: number(el, "meters")?,
        total: watts("total")?,
        mean: watts("mean")?,
        median: watts("median")?,
        p95: watts("p95")?,
        rating: watts("rating")?,
        revision,
        spikes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private() -> Summary {
        Summary {
            mode: SummaryMode::Private,
            start: Timestamp::parse_rfc3339("2026-11-24T20:00:05Z").unwrap(),
            length: 5_000,
            meters: 50,
            total: Watts(35_510),
            mean: Watts(710),
            median: Watts(260),
            p95: Watts(2_510),
            rating: Watts(150_000),
            revision: 0,
            spikes: Some(SpikeSummary {
                houses: 1,
                threshold: Watts(9_200),
            }),
        }
    }

    #[test]
    fn encodes_every_figure_as_an_attribute_and_reads_it_back() {
        let expected: Element = "<summary xmlns='urn:gridmuc:summary:0' mode='private' \
            start='2026-11-24T20:00:05Z' length='5000' meters='50' total='35510' mean='710' \
            median='260' p95='2510' rating='150000' unit='W' spikes='1' spike_threshold='9200'/>"
            .parse()
            .unwrap();
        assert_eq!(encode_summary(&private()), expected);
        assert_eq!(decode_summary(&expected), Ok(private()));
        let plain = Summary {
            mode: SummaryMode::Pseudonymous,
            revision: 2,
            spikes: None,
            ..private()
        };
        let el = encode_summary(&plain);
        assert_eq!(el.attr("revision"), Some("2"));
        assert_eq!(el.attr("spikes"), None);
        assert_eq!(decode_summary(&el), Ok(plain));
    }

    #[test]
    fn the_plain_bot_rounds_its_statistics_to_whole_watts() {
        let mut values = [1_000, 2_005, 3_000];
        let stats = IntervalStats::compute(Timestamp(60_000), 60_000, &mut values);
        let s = Summary::from_stats(&stats, Watts(400_000));
        assert_eq!(
            (s.meters, s.total, s.mean, s.median),
            (3, Watts(6_005), Watts(2_002), Watts(2_005))
        );
        assert_eq!(s.rating, Watts(400_000));
        assert_eq!(whole_watts(f64::NAN), Watts(0));
    }

    #[test]
    fn refuses_what_it_did_not_write() {
        let with = |attr: &str, value: &str| {
            let el = encode_summary(&private());
            let old = format!("{attr}='{}'", el.attr(attr).unwrap());
            let s = String::from(&el).replace(&old, &format!("{attr}='{value}'"));
            decode_summary(&s.parse().unwrap())
        };
        assert_eq!(with("mode", "open"), Err(Rejection::BadAttribute("mode")));
        assert_eq!(
            with("total", "3.5e4"),
            Err(Rejection::BadAttribute("total"))
        );
        assert_eq!(with("meters", "-1"), Err(Rejection::BadAttribute("meters")));
        assert_eq!(with("start", "now"), Err(Rejection::BadAttribute("start")));
        assert_eq!(with("unit", "kW"), Err(Rejection::BadUnit("kW".into())));
        let alert: Element = "<alert xmlns='urn:gridmuc:alert:0'/>".parse().unwrap();
        assert!(matches!(
            decode_summary(&alert),
            Err(Rejection::WrongNamespace(_))
        ));
    }
}
