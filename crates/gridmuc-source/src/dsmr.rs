//! DSMR P1 telegrams (Dutch, Belgian and Luxembourg smart meters), sans-IO, in two steps:
//! [`P1Decoder`] buffers bytes and cuts out a whole telegram (`/` … `!CRC`) and checks its
//! CRC-16/ARC, then [`parse`] reads the few OBIS codes a meter agent needs.
//!
//! Why our own parser: `dsmr-parse` 0.4.2 (the tolerant, maintained choice) types currents as
//! integers and so refuses every Belgian (Fluvius e-MUCS) telegram, whose `31.7.0(000.00*A)`
//! has decimals; `dsmr5` fails on any OBIS code it does not know. We read only power and
//! energy and ignore every other line, so a new register or a national variant cannot break
//! a house's readings. The checksum is the `crc` crate's, the widely used CRC catalogue.

use crate::accumulate::{Energy, Observation, resolution};

/// Telegrams are 1–2 KiB (Belgian ones with a 13-month demand history included); anything
/// this long without an end is noise, and the buffer is dropped.
const MAX_TELEGRAM: usize = 16 * 1024;

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_ARC);

/// Why a telegram was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum P1Error {
    /// The checksum does not match the telegram (a flipped bit, lost bytes).
    #[error("checksum mismatch: computed {computed:04X}, telegram says {expected:04X}")]
    Crc {
        /// Computed over `/` … `!`.
        computed: u16,
        /// From the telegram's last line.
        expected: u16,
    },
    /// The checksum line is not four hex digits.
    #[error("checksum line {0:?} is not four hex digits")]
    CrcLine(String),
    /// A new telegram started before the previous one ended: bytes were lost.
    #[error("telegram cut short by the start of the next")]
    Truncated,
    /// No end after [`MAX_TELEGRAM`] bytes.
    #[error("no telegram end within {MAX_TELEGRAM} bytes")]
    TooLong,
    /// A register we read has a value that is not a number with a known unit.
    #[error("{obis}: cannot read {value:?}")]
    Value {
        /// The OBIS code.
        obis: String,
        /// Its value as sent.
        value: String,
    },
    /// The telegram has neither power nor energy registers.
    #[error("telegram has no power (1.7.0/2.7.0) or energy (1.8.x/2.8.x) register")]
    Empty,
}

/// Cuts a P1 byte stream into telegrams.
#[derive(Debug, Default)]
pub struct P1Decoder {
    buf: Vec<u8>,
}

impl P1Decoder {
    /// Feeds `bytes`; every whole telegram in them, checked and parsed, is pushed to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Result<Observation, P1Error>>) {
        self.buf.extend_from_slice(bytes);
        while let Some(frame) = self.next_frame() {
            out.push(frame);
        }
    }

    fn next_frame(&mut self) -> Option<Result<Observation, P1Error>> {
        // Anything before a `/` is line noise or the tail of a telegram we joined midway.
        let Some(start) = self.buf.iter().position(|&b| b == b'/') else {
            self.buf.clear();
            return None;
        };
        self.buf.drain(..start);
        let bang = self.buf.iter().position(|&b| b == b'!');
        let restart = self.buf[1..].iter().position(|&b| b == b'/').map(|i| i + 1);
        if let Some(next) = restart.filter(|&n| bang.is_none_or(|b| n < b)) {
            self.buf.drain(..next);
            return Some(Err(P1Error::Truncated));
        }
        let Some(bang) = bang else {
            return self.too_long();
        };
        let Some(eol) = self.buf[bang..].iter().position(|&b| b == b'\n') else {
            return self.too_long();
        };
        let frame: Vec<u8> = self.buf.drain(..=bang + eol).collect();
        Some(check(&frame, bang))
    }

    fn too_long(&mut self) -> Option<Result<Observation, P1Error>> {
        if self.buf.len() <= MAX_TELEGRAM {
            return None;
        }
        self.buf.clear();
        Some(Err(P1Error::TooLong))
    }
}

/// Verifies the checksum after `!` (DSMR 2.2 and 3 have none) and parses the telegram.
fn check(frame: &[u8], bang: usize) -> Result<Observation, P1Error> {
    let crc_line = String::from_utf8_lossy(&frame[bang + 1..])
        .trim()
        .to_owned();
    if !crc_line.is_empty() {
        let expected = (crc_line.len() == 4)
            .then(|| u16::from_str_radix(&crc_line, 16).ok())
            .flatten()
            .ok_or_else(|| P1Error::CrcLine(crc_line.clone()))?;
        let computed = CRC.checksum(&frame[..=bang]);
        if computed != expected {
            return Err(P1Error::Crc { computed, expected });
        }
    }
    parse(&String::from_utf8_lossy(&frame[..bang]))
}

/// Reads power and energy from a telegram's text; every other line is ignored.
pub fn parse(text: &str) -> Result<Observation, P1Error> {
    let mut import_kw = None;
    let mut export_kw = None;
    let mut import = Register::default();
    let mut export = Register::default();
    for line in text.lines() {
        let Some((obis, rest)) = line.trim().split_once('(') else {
            continue;
        };
        // `1-0:1.7.0` and, on some meters, without the `1-0:` medium and channel.
        let code = match obis.split_once(':') {
            Some(("1-0", code)) => code,
            Some(_) => continue,
            None => obis,
        };
        let value = rest.split(')').next().unwrap_or_default();
        let read = |kilo: &str, base: &str| read_value(obis, value, kilo, base);
        match code {
            "1.7.0" => import_kw = Some(read("kW", "W")?.0),
            "2.7.0" => export_kw = Some(read("kW", "W")?.0),
            "1.8.0" => import.total = Some(read("kWh", "Wh")?),
            "1.8.1" | "1.8.2" | "1.8.3" | "1.8.4" => import.add(read("kWh", "Wh")?),
            "2.8.0" => export.total = Some(read("kWh", "Wh")?),
            "2.8.1" | "2.8.2" | "2.8.3" | "2.8.4" => export.add(read("kWh", "Wh")?),
            _ => {}
        }
    }
    let power = match (import_kw, export_kw) {
        (None, None) => None,
        (i, e) => Some(i.unwrap_or(0.0) - e.unwrap_or(0.0)),
    };
    let energy = import.get().map(|(import_wh, res_i)| {
        let (export_wh, res_e) = export.get().unwrap_or((0.0, res_i));
        Energy {
            import_wh,
            export_wh,
            resolution_wh: res_i.max(res_e),
        }
    });
    if power.is_none() && energy.is_none() {
        return Err(P1Error::Empty);
    }
    Ok(Observation { power, energy })
}

/// A register read as (watts or watt-hours, resolution).
type Value = (f64, f64);

/// An energy total, or the sum of its tariff registers.
#[derive(Default)]
struct Register {
    total: Option<Value>,
    tariffs: Option<Value>,
}

impl Register {
    fn add(&mut self, (v, res): Value) {
        let (sum, r) = self.tariffs.unwrap_or((0.0, res));
        self.tariffs = Some((sum + v, r.max(res)));
    }

    fn get(&self) -> Option<Value> {
        self.total.or(self.tariffs)
    }
}

/// `00.741*kW` → 741 W (with `kilo` the thousandfold unit, `base` the unit itself).
fn read_value(obis: &str, value: &str, kilo: &str, base: &str) -> Result<Value, P1Error> {
    let bad = || P1Error::Value {
        obis: obis.to_owned(),
        value: value.to_owned(),
    };
    let (number, unit) = value.split_once('*').unwrap_or((value, kilo));
    let scale = match unit {
        u if u.eq_ignore_ascii_case(kilo) => 1_000.0,
        u if u.eq_ignore_ascii_case(base) => 1.0,
        _ => return Err(bad()),
    };
    let v: f64 = number.parse().map_err(|_| bad())?;
    if !v.is_finite() {
        return Err(bad());
    }
    Ok((v * scale, resolution(number, scale)))
}

/// A telegram's text with its checksum line appended, as a meter sends it (for tests and
/// simulators that feed a P1 port).
pub fn seal(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| *l != "!")
        .collect();
    let payload = format!("{}\r\n!", lines.join("\r\n"));
    format!("{payload}{:04X}\r\n", CRC.checksum(payload.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(bytes: &[u8]) -> Vec<Result<Observation, P1Error>> {
        let mut d = P1Decoder::default();
        let mut out = Vec::new();
        d.push(bytes, &mut out);
        out
    }

    #[test]
    fn value_units_and_resolution() {
        assert_eq!(read_value("x", "00.741*kW", "kW", "W"), Ok((741.0, 1.0)));
        assert_eq!(read_value("x", "01234*W", "kW", "W"), Ok((1234.0, 1.0)));
        assert_eq!(
            read_value("x", "004169.415*kWh", "kWh", "Wh"),
            Ok((4_169_415.0, 1.0))
        );
        assert!(read_value("x", "1.0*V", "kW", "W").is_err());
        assert!(read_value("x", "NaN*kW", "kW", "W").is_err());
    }

    #[test]
    fn unknown_and_foreign_lines_are_ignored() {
        let obs = parse("/X\n\n0-1:24.2.1(101209112500W)(12785.123*m3)\n1-0:99.99.9(?)\n1-0:1.7.0(01.500*kW)\n1-0:2.7.0(00.200*kW)\n").unwrap();
        assert_eq!(obs.power, Some(1_300.0));
        assert_eq!(obs.energy, None);
        assert_eq!(parse("/X\n\n1-0:32.7.0(230*V)\n"), Err(P1Error::Empty));
    }

    #[test]
    fn seal_then_decode_split_anywhere() {
        let telegram = seal("/ISK5\\2M550T\n\n1-0:1.7.0(00.123*kW)\n!");
        let bytes = telegram.as_bytes();
        for cut in 0..bytes.len() {
            let mut d = P1Decoder::default();
            let mut out = Vec::new();
            d.push(&bytes[..cut], &mut out);
            d.push(&bytes[cut..], &mut out);
            assert_eq!(out.len(), 1, "cut at {cut}");
            assert_eq!(out[0].as_ref().unwrap().power, Some(123.0));
        }
    }

    #[test]
    fn a_flipped_digit_fails_the_checksum_and_the_next_telegram_still_reads() {
        let good = seal("/X\n\n1-0:1.7.0(00.500*kW)\n!");
        let bad = good.replace("00.500", "00.900");
        let out = decode(format!("{bad}{good}").as_bytes());
        assert!(matches!(out[0], Err(P1Error::Crc { .. })), "{out:?}");
        assert_eq!(out[1].as_ref().unwrap().power, Some(500.0));
    }

    #[test]
    fn lost_bytes_and_noise() {
        let good = seal("/X\n\n1-0:1.7.0(00.500*kW)\n!");
        let cut = &good[..good.len() / 2];
        let out = decode(format!("\x00\x7f junk{cut}{good}").as_bytes());
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0], Err(P1Error::Truncated));
        assert!(out[1].is_ok());
        let mut d = P1Decoder::default();
        let mut out = Vec::new();
        d.push(&[b'/'; MAX_TELEGRAM / 2], &mut out);
        assert!(out.iter().all(|r| *r == Err(P1Error::Truncated)));
        let mut d = P1Decoder::default();
        let mut out = Vec::new();
        d.push(b"/", &mut out);
        d.push(&[b'x'; MAX_TELEGRAM + 1], &mut out);
        assert_eq!(out, [Err(P1Error::TooLong)]);
        assert_eq!(
            decode(b"/X\r\n\r\n1-0:1.7.0(1*kW)\r\n!12G4\r\n"),
            [Err(P1Error::CrcLine("12G4".into()))]
        );
    }

    proptest! {
        /// No input panics the decoder, and its buffer stays bounded.
        #[test]
        fn any_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..40)) {
            let mut d = P1Decoder::default();
            let mut out = Vec::new();
            for c in &chunks {
                d.push(c, &mut out);
                prop_assert!(d.buf.len() <= MAX_TELEGRAM + 600);
            }
        }

        /// Any power and energy written in a telegram reads back exactly.
        #[test]
        fn written_values_read_back(imp in 0u32..99_999, exp in 0u32..99_999, t1 in 0u64..99_999_999, t2 in 0u64..99_999_999) {
            let text = format!(
                "/XMX5\n\n1-0:1.8.1({:06}.{:03}*kWh)\n1-0:1.8.2({:06}.{:03}*kWh)\n1-0:2.8.1(000001.000*kWh)\n1-0:1.7.0({:02}.{:03}*kW)\n1-0:2.7.0({:02}.{:03}*kW)\n!",
                t1 / 1000, t1 % 1000, t2 / 1000, t2 % 1000, imp / 1000, imp % 1000, exp / 1000, exp % 1000
            );
            let out = decode(seal(&text).as_bytes());
            let obs = out[0].as_ref().unwrap();
            let near = |a: f64, b: f64| (a - b).abs() < 1e-6 * b.abs().max(1.0);
            prop_assert!(near(obs.power.unwrap(), f64::from(imp) - f64::from(exp)));
            let e = obs.energy.unwrap();
            prop_assert!(near(e.import_wh, (t1 + t2) as f64));
            prop_assert!(near(e.export_wh, 1_000.0));
            prop_assert_eq!(e.resolution_wh, 1.0);
        }
    }
}
