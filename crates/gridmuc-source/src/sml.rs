//! SML (German meters read through an optical head), sans-IO, through `sml-rs`: its transport
//! decoder cuts the escape-framed, CRC-checked files out of the byte stream into a bounded
//! buffer, its parser builds the messages, and we read OBIS 16.7.0 (net power) and 1.8.0 /
//! 2.8.0 (energy). `sml-rs` is the maintained Rust SML crate and is tested against the 76
//! real captures of libsml-testing.

use crate::accumulate::{Energy, Observation};
use sml_rs::parser::common::Value;
use sml_rs::parser::complete::{self, MessageBody};
use sml_rs::transport::{DecodeErr, Decoder};
use sml_rs::util::ArrayBuf;

/// `sml-rs`'s own default: more than any meter's file, and a stream without an end escape
/// cannot grow past it.
type Buf = ArrayBuf<8192>;

const POWER: [u8; 6] = [1, 0, 16, 7, 0, 255];
const IMPORT: [u8; 6] = [1, 0, 1, 8, 0, 255];
const EXPORT: [u8; 6] = [1, 0, 2, 8, 0, 255];

/// Why an SML file was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SmlError {
    /// Bad checksum, escape sequence or framing, or a file larger than the buffer.
    #[error("transport: {0}")]
    Transport(DecodeErr),
    /// The file's messages do not parse.
    #[error("parse: {0:?}")]
    Parse(sml_rs::parser::ParseError),
    /// The file has neither 16.7.0 nor 1.8.0 / 2.8.0.
    #[error("file has no power (16.7.0) or energy (1.8.0/2.8.0) entry")]
    Empty,
}

/// Cuts an SML byte stream into files.
#[derive(Default)]
pub struct SmlDecoder {
    decoder: Decoder<Buf>,
}

impl std::fmt::Debug for SmlDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmlDecoder")
    }
}

impl SmlDecoder {
    /// Feeds `bytes`; every whole file in them, checked and parsed, is pushed to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Result<Observation, SmlError>>) {
        for &b in bytes {
            match self.decoder.push_byte(b) {
                Ok(None) => {}
                Ok(Some(file)) => out.push(parse(file)),
                // Bytes before the first start sequence: we joined the stream midway.
                Err(DecodeErr::DiscardedBytes(_)) => {}
                Err(e) => out.push(Err(SmlError::Transport(e))),
            }
        }
    }
}

/// Reads power and energy from one decoded SML file.
pub fn parse(file: &[u8]) -> Result<Observation, SmlError> {
    let file = complete::parse(file).map_err(SmlError::Parse)?;
    let mut obs = Observation::default();
    let mut import = None;
    let mut export = None;
    for msg in &file.messages {
        let MessageBody::GetListResponse(list) = &msg.message_body else {
            continue;
        };
        for entry in &list.val_list {
            let Some(raw) = number(&entry.value) else {
                continue;
            };
            let step = 10f64.powi(i32::from(entry.scaler.unwrap_or(0)));
            let value = raw * step;
            match entry.obj_name {
                n if n == POWER => obs.power = Some(value),
                n if n == IMPORT => import = Some((value, step)),
                n if n == EXPORT => export = Some((value, step)),
                _ => {}
            }
        }
    }
    obs.energy = import.map(|(import_wh, res)| {
        let (export_wh, res_e) = export.unwrap_or((0.0, res));
        Energy {
            import_wh,
            export_wh,
            resolution_wh: res.max(res_e),
        }
    });
    if obs.power.is_none() && obs.energy.is_none() {
        return Err(SmlError::Empty);
    }
    Ok(obs)
}

fn number(v: &Value) -> Option<f64> {
    Some(match *v {
        Value::I8(x) => f64::from(x),
        Value::I16(x) => f64::from(x),
        Value::I32(x) => f64::from(x),
        Value::I64(x) => x as f64,
        Value::U8(x) => f64::from(x),
        Value::U16(x) => f64::from(x),
        Value::U32(x) => f64::from(x),
        Value::U64(x) => x as f64,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// No input panics the decoder.
        #[test]
        fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            let mut d = SmlDecoder::default();
            let mut out = Vec::new();
            d.push(&bytes, &mut out);
        }
    }
}
