//! Measured household load traces as the replay and the realism report read them: a grid of
//! houses × equal periods, built line by line from three layouts.
//!
//! - long format: a header naming `timestamp`, `house` and either `watts` (mean power of the
//!   period) or `kwh` (energy of the period), one row per house and period, any column order;
//! - the London smart-meter layout (UK Power Networks' Low Carbon London trial):
//!   `LCLid,stdorToU,DateTime,KWH/hh (per half hour)`, `Null` for a missing reading;
//! - SimBench's `LoadProfile.csv` (`time;<profile>_qload;<profile>_pload;…`, `dd.mm.yyyy HH:MM`,
//!   each profile normalised to a peak of 1): the chosen household profiles are scaled to an
//!   annual energy and repeated, shifted by whole days, into as many houses as asked.
//!
//! Sans-IO: the caller reads the file and hands over one line at a time ([`TraceBuilder::push_line`]),
//! so a 10 GB file is never held as one string and errors name the line. Timestamps are taken as
//! UTC; a missing period is `NaN` (the meter sent nothing).

use crate::calendar::days_from_civil;
use gridmuc_core::Timestamp;
use gridmuc_core::time::{DAY, HOUR, MINUTE, Millis};
use std::collections::HashMap;
use thiserror::Error;

/// Houses × periods of mean power, the input of a replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Traces {
    /// Start of the first period.
    pub start: Timestamp,
    /// Length of every period.
    pub step: Millis,
    /// House ids as the source names them (pseudonyms in the public data sets).
    pub houses: Vec<String>,
    /// `watts[h][p]`: mean power (W) of house `h` in period `p`; `NaN` where nothing was recorded.
    pub watts: Vec<Vec<f32>>,
}

impl Traces {
    /// Number of periods.
    pub fn periods(&self) -> usize {
        self.watts.first().map_or(0, Vec::len)
    }

    /// Whole days covered, from the first midnight on or after `start`.
    pub fn whole_days(&self) -> u32 {
        let first = self.start.0.div_euclid(DAY) + i64::from(self.start.0.rem_euclid(DAY) != 0);
        let end = self.start.0 + self.periods() as i64 * self.step;
        u32::try_from((end.div_euclid(DAY) - first).max(0)).unwrap_or(0)
    }
}

/// Which layout a file has, decided from its header line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `timestamp,house,watts|kwh` in any column order.
    Long,
    /// `LCLid,stdorToU,DateTime,KWH/hh (per half hour)`.
    London,
    /// SimBench `LoadProfile.csv`.
    SimBench,
}

/// How SimBench's normalised profiles become houses.
#[derive(Clone, Debug, PartialEq)]
pub struct SimBenchHouses {
    /// Profiles to use (column prefixes before `_pload`); the single-household H0 profiles by default.
    pub profiles: Vec<String>,
    /// Houses to build; house `h` is profile `h mod profiles` shifted by `k = h div profiles`
    /// days alternately later and earlier (0, +1, −1, +2, …): a few days keep the seasons,
    /// whole weeks would not once there are dozens of copies.
    pub houses: usize,
    /// Annual energy each profile is scaled to (kWh); Ofgem's medium TDCV is 2,700.
    pub annual_kwh: f64,
}

impl Default for SimBenchHouses {
    fn default() -> Self {
        SimBenchHouses {
            // H0-H peaks at only 1.5× its mean (an aggregate), BL-H and WB-H are heating loads:
            // the other five H0 profiles look like single homes (peak 7–18× the mean).
            profiles: ["H0-A", "H0-B", "H0-C", "H0-G", "H0-L"]
                .map(String::from)
                .to_vec(),
            houses: 50,
            annual_kwh: 2_700.0,
        }
    }
}

/// Why a trace file cannot be read.
#[derive(Debug, Error, PartialEq)]
pub enum TraceError {
    /// The file has no header line or no data.
    #[error("no data: {0}")]
    Empty(&'static str),
    /// The header matches none of the layouts.
    #[error(
        "line 1: unknown layout (want `timestamp,house,watts|kwh`, the London `LCLid,…,DateTime,KWH/hh` or SimBench `time;…_pload`): {0}"
    )]
    UnknownLayout(String),
    /// A SimBench file lacks a requested profile.
    #[error("SimBench profile `{0}` is not in the file (no `{0}_pload` column)")]
    MissingProfile(String),
    /// A row has fewer fields than the header.
    #[error("line {line}: {found} fields, the header has {expected}")]
    ShortRow {
        /// 1-based line number.
        line: usize,
        /// Fields in the row.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// A timestamp that none of the accepted forms matches.
    #[error(
        "line {line}: timestamp `{value}` is not `YYYY-MM-DD[ T]HH:MM[:SS[.f]][Z]`, `DD.MM.YYYY HH:MM` or Unix seconds"
    )]
    BadTimestamp {
        /// 1-based line number.
        line: usize,
        /// The text found.
        value: String,
    },
    /// A value that is not a finite number (and not `Null` where the layout allows it).
    #[error("line {line}: `{column}` value `{value}` is not a finite number")]
    BadNumber {
        /// 1-based line number.
        line: usize,
        /// Column name.
        column: String,
        /// The text found.
        value: String,
    },
    /// A period that does not fall on the grid set by the first periods.
    #[error("line {line}: {timestamp} is not a whole number of {step_s} s periods after the first")]
    OffGrid {
        /// 1-based line number.
        line: usize,
        /// The period start, RFC 3339.
        timestamp: String,
        /// The period length inferred from the file.
        step_s: i64,
    },
    /// The same house and period twice.
    #[error("line {line}: house `{house}` has a second value for {timestamp}")]
    Duplicate {
        /// 1-based line number.
        line: usize,
        /// House id.
        house: String,
        /// The period start, RFC 3339.
        timestamp: String,
    },
    /// Periods must divide a day so the aggregator's intervals line up with midnight.
    #[error("the period is {0} s; it must be a whole number of minutes that divides a day")]
    BadStep(i64),
}

/// Which value a long trace's value column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Mean power of the period (W).
    Watts,
    /// Energy of the period (kWh).
    KwhPerPeriod,
}

#[derive(Debug)]
enum Columns {
    Long {
        timestamp: usize,
        house: usize,
        value: usize,
        unit: Unit,
        names: Vec<String>,
    },
    /// Long-format rows handed over already split ([`TraceBuilder::push_row`]).
    Rows { unit: Unit },
    SimBench {
        time: usize,
        /// Column of each requested profile.
        profiles: Vec<usize>,
    },
}

/// Builds [`Traces`] from lines; keeps rows until [`TraceBuilder::finish`] lays out the grid.
#[derive(Debug)]
pub struct TraceBuilder {
    layout: Option<Layout>,
    delimiter: char,
    columns: Option<Columns>,
    fields: usize,
    simbench: SimBenchHouses,
    max_houses: usize,
    house_ids: HashMap<String, usize>,
    names: Vec<String>,
    /// (house, period start ms, watts or kWh as read, line)
    rows: Vec<(u32, i64, f32, usize)>,
    /// SimBench: period starts and one value per profile.
    profile_rows: Vec<(i64, Vec<f32>)>,
}

impl TraceBuilder {
    /// A builder for any layout; `max_houses` stops collecting after that many distinct houses
    /// (long and London layouts), so a slice of a big file can be replayed.
    pub fn new(simbench: SimBenchHouses, max_houses: usize) -> TraceBuilder {
        TraceBuilder {
            layout: None,
            delimiter: ',',
            columns: None,
            fields: 0,
            simbench,
            max_houses: max_houses.max(1),
            house_ids: HashMap::new(),
            names: Vec::new(),
            rows: Vec::new(),
            profile_rows: Vec::new(),
        }
    }

    /// A builder for long-format rows whose columns a caller has already split (a Parquet
    /// file's), through [`TraceBuilder::push_row`].
    pub fn rows(unit: Unit, max_houses: usize) -> TraceBuilder {
        TraceBuilder {
            layout: Some(Layout::Long),
            columns: Some(Columns::Rows { unit }),
            ..TraceBuilder::new(SimBenchHouses::default(), max_houses)
        }
    }

    /// Takes one long-format row (`row` is its 1-based number, for errors); `NaN` is a missing
    /// period. Houses past `max_houses` are skipped.
    pub fn push_row(&mut self, row: usize, house: &str, at: Timestamp, value: f32) {
        let h = match self.house_ids.get(house) {
            Some(h) => *h,
            None if self.names.len() >= self.max_houses => return,
            None => {
                self.house_ids.insert(house.to_owned(), self.names.len());
                self.names.push(house.to_owned());
                self.names.len() - 1
            }
        };
        self.rows.push((h as u32, at.0, value, row));
    }

    /// The layout detected from the header, once the first line was pushed.
    pub fn layout(&self) -> Option<Layout> {
        self.layout
    }

    /// Takes the next line; `line` is its 1-based number, for errors.
    pub fn push_line(&mut self, line: usize, text: &str) -> Result<(), TraceError> {
        let text = text.trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() {
            return Ok(());
        }
        if self.columns.is_none() {
            return self.header(text);
        }
        let fields: Vec<&str> = text.split(self.delimiter).map(str::trim).collect();
        if fields.len() < self.fields {
            return Err(TraceError::ShortRow {
                line,
                found: fields.len(),
                expected: self.fields,
            });
        }
        let (at, v, id) = match &self.columns {
            Some(Columns::Long {
                timestamp,
                house,
                value,
                names,
                ..
            }) => {
                let at = parse_timestamp(fields[*timestamp]).ok_or_else(|| {
                    TraceError::BadTimestamp {
                        line,
                        value: fields[*timestamp].to_owned(),
                    }
                })?;
                let v = match fields[*value] {
                    "Null" | "null" | "NA" | "" => f32::NAN,
                    s => parse_number(s, line, &names[*value])?,
                };
                (at, v, fields[*house])
            }
            Some(Columns::SimBench { time, profiles }) => {
                let at =
                    parse_timestamp(fields[*time]).ok_or_else(|| TraceError::BadTimestamp {
                        line,
                        value: fields[*time].to_owned(),
                    })?;
                let values = profiles
                    .iter()
                    .zip(&self.simbench.profiles)
                    .map(|(c, name)| parse_number(fields[*c], line, name))
                    .collect::<Result<Vec<f32>, _>>()?;
                self.profile_rows.push((at.0, values));
                return Ok(());
            }
            None | Some(Columns::Rows { .. }) => {
                return Err(TraceError::UnknownLayout(
                    "a text line for a builder of split rows".into(),
                ));
            }
        };
        self.push_row(line, id, at, v);
        Ok(())
    }

    fn header(&mut self, text: &str) -> Result<(), TraceError> {
        self.delimiter = if text.contains(';') { ';' } else { ',' };
        let names: Vec<String> = text
            .split(self.delimiter)
            .map(|s| s.trim().trim_matches('"').to_owned())
            .collect();
        let find = |pred: &dyn Fn(&str) -> bool| names.iter().position(|n| pred(n));
        self.fields = names.len();
        let lower = |n: &str| n.to_ascii_lowercase();
        if let (Some(house), Some(timestamp), Some(value)) = (
            find(&|n| n == "LCLid"),
            find(&|n| n == "DateTime"),
            find(&|n| n.starts_with("KWH/hh")),
        ) {
            self.layout = Some(Layout::London);
            self.columns = Some(Columns::Long {
                timestamp,
                house,
                value,
                unit: Unit::KwhPerPeriod,
                names,
            });
            return Ok(());
        }
        if let Some(time) = find(&|n| n == "time")
            && names.iter().any(|n| n.ends_with("_pload"))
        {
            let profiles = self
                .simbench
                .profiles
                .iter()
                .map(|p| {
                    let col = format!("{p}_pload");
                    find(&|n| n == col).ok_or_else(|| TraceError::MissingProfile(p.clone()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.layout = Some(Layout::SimBench);
            self.columns = Some(Columns::SimBench { time, profiles });
            return Ok(());
        }
        let value = find(&|n| lower(n) == "watts")
            .map(|c| (c, Unit::Watts))
            .or_else(|| find(&|n| lower(n) == "kwh").map(|c| (c, Unit::KwhPerPeriod)));
        match (
            find(&|n| lower(n) == "timestamp"),
            find(&|n| lower(n) == "house"),
            value,
        ) {
            (Some(timestamp), Some(house), Some((value, unit))) => {
                self.layout = Some(Layout::Long);
                self.columns = Some(Columns::Long {
                    timestamp,
                    house,
                    value,
                    unit,
                    names,
                });
                Ok(())
            }
            _ => Err(TraceError::UnknownLayout(text.chars().take(120).collect())),
        }
    }

    /// Lays out the grid: the period is the shortest gap between one house's rows.
    pub fn finish(self) -> Result<Traces, TraceError> {
        match self.columns {
            None => Err(TraceError::Empty("no header line")),
            Some(Columns::SimBench { .. }) => finish_simbench(self.profile_rows, &self.simbench),
            Some(Columns::Long { unit, .. } | Columns::Rows { unit }) => {
                finish_long(self.rows, self.names, unit)
            }
        }
    }
}

fn parse_number(s: &str, line: usize, column: &str) -> Result<f32, TraceError> {
    s.parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| TraceError::BadNumber {
            line,
            column: column.to_owned(),
            value: s.to_owned(),
        })
}

/// The period: the shortest positive gap between successive rows of one house.
fn infer_step(rows: &[(u32, i64, f32, usize)]) -> Option<i64> {
    let mut last: HashMap<u32, i64> = HashMap::new();
    let mut step: Option<i64> = None;
    for &(h, t, _, _) in rows {
        if let Some(prev) = last.insert(h, t) {
            let gap = (t - prev).abs();
            if gap > 0 {
                step = Some(step.map_or(gap, |s| s.min(gap)));
            }
        }
    }
    step
}

fn check_step(step: i64) -> Result<(), TraceError> {
    if step % MINUTE != 0 || DAY % step != 0 {
        return Err(TraceError::BadStep(step / 1000));
    }
    Ok(())
}

fn finish_long(
    rows: Vec<(u32, i64, f32, usize)>,
    names: Vec<String>,
    unit: Unit,
) -> Result<Traces, TraceError> {
    let step = infer_step(&rows).ok_or(TraceError::Empty("fewer than two periods per house"))?;
    check_step(step)?;
    let start = rows.iter().map(|r| r.1).min().unwrap_or(0);
    let end = rows.iter().map(|r| r.1).max().unwrap_or(0);
    let periods = ((end - start) / step + 1) as usize;
    let mut watts = vec![vec![f32::NAN; periods]; names.len()];
    let to_watts = match unit {
        Unit::Watts => 1.0,
        Unit::KwhPerPeriod => 1000.0 * HOUR as f32 / step as f32,
    };
    for (h, t, v, line) in rows {
        let stamp = || Timestamp(t).to_rfc3339();
        if (t - start) % step != 0 {
            return Err(TraceError::OffGrid {
                line,
                timestamp: stamp(),
                step_s: step / 1000,
            });
        }
        let cell = &mut watts[h as usize][((t - start) / step) as usize];
        if !cell.is_nan() {
            return Err(TraceError::Duplicate {
                line,
                house: names[h as usize].clone(),
                timestamp: stamp(),
            });
        }
        *cell = v * to_watts;
    }
    Ok(Traces {
        start: Timestamp(start),
        step,
        houses: names,
        watts,
    })
}

fn finish_simbench(
    rows: Vec<(i64, Vec<f32>)>,
    houses: &SimBenchHouses,
) -> Result<Traces, TraceError> {
    let (Some(first), Some(second)) = (rows.first(), rows.get(1)) else {
        return Err(TraceError::Empty("fewer than two SimBench rows"));
    };
    let (start, step) = (first.0, second.0 - first.0);
    check_step(step)?;
    let periods = rows.len();
    let profiles = houses.profiles.len();
    let mut scaled: Vec<Vec<f32>> = (0..profiles)
        .map(|p| rows.iter().map(|r| r.1[p]).collect::<Vec<f32>>())
        .collect();
    for profile in &mut scaled {
        // Mean power that gives `annual_kwh` over a year, whatever the file's length.
        let mean = profile.iter().map(|v| f64::from(*v)).sum::<f64>() / periods as f64;
        let target_w = houses.annual_kwh * 1000.0 / (365.0 * 24.0);
        let k = if mean > 0.0 { target_w / mean } else { 0.0 };
        for v in profile.iter_mut() {
            *v = (f64::from(*v) * k) as f32;
        }
    }
    let day = DAY / step;
    let shift_days = |h: usize| {
        let k = (h / profiles) as i64;
        if k % 2 == 1 { (k + 1) / 2 } else { -k / 2 }
    };
    let watts = (0..houses.houses)
        .map(|h| {
            let profile = &scaled[h % profiles];
            let shift = (shift_days(h) * day).rem_euclid(periods as i64) as usize;
            (0..periods)
                .map(|p| profile[(p + shift) % periods])
                .collect()
        })
        .collect();
    let names = (0..houses.houses)
        .map(|h| format!("{}{:+}d", houses.profiles[h % profiles], shift_days(h)))
        .collect();
    Ok(Traces {
        start: Timestamp(start),
        step,
        houses: names,
        watts,
    })
}

/// Accepts `YYYY-MM-DD[ T]HH:MM[:SS[.fff]][Z]`, `DD.MM.YYYY HH:MM[:SS]` and Unix seconds, as UTC.
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    let s = s.trim().trim_matches('"');
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().map(|secs| Timestamp(secs * 1000));
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = s.split_once(['T', ' '])?;
    let parts: Vec<&str> = date.split(['-', '.']).collect();
    let [a, b, c] = parts.as_slice() else {
        return None;
    };
    let (y, m, d) = if date.contains('-') {
        (a.parse().ok()?, b.parse().ok()?, c.parse().ok()?)
    } else {
        (c.parse().ok()?, b.parse().ok()?, a.parse().ok()?)
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut hms = time.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let min: i64 = hms.next()?.parse().ok()?;
    let sec: f64 = hms.next().map_or(Some(0.0), |x| x.parse().ok())?;
    if hms.next().is_some()
        || !(0..24).contains(&h)
        || !(0..60).contains(&min)
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    let day = days_from_civil(y, m, d);
    Some(Timestamp(
        day * DAY + h * HOUR + min * MINUTE + (sec * 1000.0).round() as i64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str, simbench: SimBenchHouses) -> Result<Traces, TraceError> {
        let mut b = TraceBuilder::new(simbench, usize::MAX);
        for (i, line) in text.lines().enumerate() {
            b.push_line(i + 1, line)?;
        }
        b.finish()
    }

    #[test]
    fn timestamps_in_every_accepted_form() {
        let t = Timestamp(days_from_civil(2013, 1, 2) * DAY + 30 * MINUTE);
        for s in [
            "2013-01-02 00:30:00.0000000",
            "2013-01-02T00:30:00Z",
            "2013-01-02 00:30",
            "02.01.2013 00:30",
            "1357086600",
        ] {
            assert_eq!(parse_timestamp(s), Some(t), "{s}");
        }
        for s in [
            "2013-13-02 00:30",
            "2013-01-02",
            "yesterday",
            "02.01.2013 24:00",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s}");
        }
    }

    #[test]
    fn long_format_in_kwh_becomes_watts_with_gaps_as_nan() {
        let text = "house,timestamp,kwh\na,2026-01-01T00:00:00Z,0.25\nb,2026-01-01T00:00:00Z,0.5\n\
                    a,2026-01-01T00:30:00Z,0.1\na,2026-01-01T01:00:00Z,0.2\n";
        let t = build(text, SimBenchHouses::default()).unwrap();
        assert_eq!(t.step, 30 * MINUTE);
        assert_eq!(t.houses, ["a", "b"]);
        assert_eq!(t.watts[0], [500.0, 200.0, 400.0]);
        assert_eq!(t.watts[1][0], 1000.0);
        assert!(t.watts[1][1].is_nan() && t.watts[1][2].is_nan());
    }

    #[test]
    fn london_layout_reads_null_as_missing() {
        let text = "LCLid,stdorToU,DateTime,KWH/hh (per half hour) \n\
                    MAC000002,Std,2012-10-12 00:30:00.0000000, 0 \n\
                    MAC000002,Std,2012-10-12 01:00:00.0000000, 0.5 \n\
                    MAC000002,Std,2012-10-12 01:30:00.0000000,Null\n\
                    MAC000002,Std,2012-10-12 02:00:00.0000000, 0.25 \n";
        let t = build(text, SimBenchHouses::default()).unwrap();
        assert_eq!(t.houses, ["MAC000002"]);
        assert_eq!(t.watts[0][..2], [0.0, 1000.0]);
        assert!(t.watts[0][2].is_nan());
        assert_eq!(t.watts[0][3], 500.0);
    }

    #[test]
    fn simbench_profiles_are_scaled_and_shifted_by_days() {
        let mut text = String::from("time;H0-A_qload;H0-A_pload;H0-B_pload\n");
        // 15 days of 15-minute rows: profile A rises with the day index, B is flat.
        for p in 0..15 * 96 {
            let t = Timestamp(days_from_civil(2016, 1, 1) * DAY + p * 15 * MINUTE);
            let (_, m, d) = crate::calendar::civil_from_days(t.0.div_euclid(DAY));
            let hm = t.0.rem_euclid(DAY) / MINUTE;
            text.push_str(&format!(
                "{d:02}.{m:02}.2016 {:02}:{:02};0;{};0.5\n",
                hm / 60,
                hm % 60,
                1 + p / 96
            ));
        }
        let houses = SimBenchHouses {
            profiles: vec!["H0-A".into(), "H0-B".into()],
            houses: 4,
            annual_kwh: 8_760.0,
        };
        let t = build(&text, houses).unwrap();
        assert_eq!(t.houses, ["H0-A+0d", "H0-B+0d", "H0-A+1d", "H0-B+1d"]);
        // 8,760 kWh a year is a mean of 1 kW.
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean(&t.watts[0]) - 1000.0).abs() < 0.5);
        assert_eq!(t.watts[1][0], 1000.0);
        // House 2 is profile A a day later: day 2's value on day 1.
        assert_eq!(t.watts[2][0], t.watts[0][96]);
        assert_eq!(t.whole_days(), 15);
    }

    #[test]
    fn errors_name_the_line_and_the_cause() {
        let d = SimBenchHouses::default;
        assert_eq!(
            build("when,who,what\n", d()),
            Err(TraceError::UnknownLayout("when,who,what".into()))
        );
        assert_eq!(
            build(
                "timestamp,house,watts\n2026-01-01 00:00,a,12\n2026-01-01 00:01,a,x\n",
                d()
            ),
            Err(TraceError::BadNumber {
                line: 3,
                column: "watts".into(),
                value: "x".into()
            })
        );
        assert_eq!(
            build("timestamp,house,watts\n2026-01-01 00:00,a\n", d()),
            Err(TraceError::ShortRow {
                line: 2,
                found: 2,
                expected: 3
            })
        );
        assert!(matches!(
            build("timestamp,house,watts\nsoon,a,1\n", d()),
            Err(TraceError::BadTimestamp { line: 2, .. })
        ));
        assert!(matches!(
            build(
                "timestamp,house,watts\n2026-01-01 00:00,a,1\n2026-01-01 00:10,a,1\n2026-01-01 00:25,a,1\n",
                d()
            ),
            Err(TraceError::OffGrid { line: 4, .. })
        ));
        assert!(matches!(
            build(
                "timestamp,house,watts\n2026-01-01 00:00,a,1\n2026-01-01 00:10,a,1\n2026-01-01 00:10,a,2\n",
                d()
            ),
            Err(TraceError::Duplicate { line: 4, .. })
        ));
        assert_eq!(
            build(
                "timestamp,house,watts\n2026-01-01 00:00,a,1\n2026-01-01 00:07,a,1\n",
                d()
            ),
            Err(TraceError::BadStep(420))
        );
        assert_eq!(
            build("time;H0-Z_pload\n", d()),
            Err(TraceError::MissingProfile("H0-A".into()))
        );
    }
}
