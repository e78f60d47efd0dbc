//! Luxembourg's encrypted P1 port ("Smarty", Luxmetering's P1 specification): every DSMR
//! telegram travels AES-128-GCM-encrypted in a binary frame, sans-IO like [`crate::dsmr`].
//!
//! ```text
//! DB 08 <system title, 8> 82 <length, 2 BE> 30 <frame counter, 4 BE> <ciphertext> <GCM tag, 12>
//! ```
//!
//! `length` counts every byte after itself. The IV is the system title followed by the frame
//! counter; the additional authenticated data is the security byte `0x30` followed by the
//! authentication key; the key is the meter's GUEK, which the grid operator gives the customer.
//! The decrypted telegram is an ordinary DSMR 5 telegram with its CRC, read by [`P1Decoder`].

use crate::accumulate::Observation;
use crate::dsmr::{P1Decoder, P1Error};
use aes_gcm::aead::consts::U12;
use aes_gcm::aes::Aes128;
use aes_gcm::{AeadInOut, AesGcm, KeyInit};

/// AES-128-GCM with a 96-bit IV and the spec's 96-bit tag.
type Cipher = AesGcm<Aes128, U12, U12>;

const TAG: u8 = 0xDB;
const TITLE_LEN: usize = 8;
const LONG_LENGTH: u8 = 0x82;
const SECURITY: u8 = 0x30;
/// Bytes before the length field's count starts: tag, title length, title, 0x82, length.
const HEAD: usize = 2 + TITLE_LEN + 1 + 2;
/// Security byte and frame counter, counted in `length`.
const SECURITY_HEAD: usize = 1 + 4;
const GCM_TAG: usize = 12;
/// Encrypted telegrams are as long as plain ones; anything longer is noise.
const MAX_FRAME: usize = 16 * 1024;

/// The authentication key every Luxembourg meter uses (the P1 specification publishes it).
pub const DEFAULT_AUTH_KEY: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
];

/// A meter's keys; `Debug` never prints them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SmartyKeys {
    /// The GUEK (global unicast encryption key).
    pub guek: [u8; 16],
    /// The authentication key (usually [`DEFAULT_AUTH_KEY`]).
    pub auth: [u8; 16],
}

impl std::fmt::Debug for SmartyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmartyKeys(…)")
    }
}

impl SmartyKeys {
    /// Keys from 32 hex digits each (spaces and colons allowed, as operators' letters print them).
    pub fn from_hex(guek: &str, auth: Option<&str>) -> Result<SmartyKeys, String> {
        Ok(SmartyKeys {
            guek: key16(guek).map_err(|e| format!("key: {e}"))?,
            auth: match auth {
                Some(a) => key16(a).map_err(|e| format!("auth_key: {e}"))?,
                None => DEFAULT_AUTH_KEY,
            },
        })
    }

    fn aad(&self) -> [u8; 17] {
        let mut aad = [0u8; 17];
        aad[0] = SECURITY;
        aad[1..].copy_from_slice(&self.auth);
        aad
    }
}

fn key16(hex: &str) -> Result<[u8; 16], String> {
    let digits: Vec<u8> = hex
        .bytes()
        .filter(|b| !matches!(b, b' ' | b':' | b'-'))
        .collect();
    if digits.len() != 32 {
        return Err(format!("{} hex digits, expected 32", digits.len()));
    }
    let mut key = [0u8; 16];
    for (k, pair) in key.iter_mut().zip(digits.chunks(2)) {
        let text = std::str::from_utf8(pair).map_err(|_| "not hex".to_owned())?;
        *k = u8::from_str_radix(text, 16).map_err(|_| format!("{text:?} is not hex"))?;
    }
    Ok(key)
}

/// Why an encrypted frame gave no reading.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SmartyError {
    /// The tag does not verify: the GUEK or the authentication key is wrong (or the frame was
    /// corrupted in transit).
    #[error(
        "cannot decrypt the P1 frame: wrong key (GUEK) or auth_key for this meter, or a corrupted frame"
    )]
    Decrypt,
    /// A frame header that does not follow the specification.
    #[error("malformed encrypted P1 frame: {0}")]
    Frame(&'static str),
    /// The decrypted telegram is refused like a plain one.
    #[error(transparent)]
    Telegram(#[from] P1Error),
}

/// Cuts an encrypted P1 byte stream into frames, decrypts them and reads the telegrams.
#[derive(Debug)]
pub struct SmartyDecoder {
    keys: SmartyKeys,
    buf: Vec<u8>,
    telegrams: P1Decoder,
}

impl SmartyDecoder {
    /// A decoder for one meter's keys.
    pub fn new(keys: SmartyKeys) -> SmartyDecoder {
        SmartyDecoder {
            keys,
            buf: Vec::new(),
            telegrams: P1Decoder::default(),
        }
    }

    /// Feeds `bytes`; every whole frame in them, decrypted and parsed, is pushed to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Result<Observation, SmartyError>>) {
        self.buf.extend_from_slice(bytes);
        while let Some(frame) = self.next_frame() {
            match frame {
                Ok(plain) => {
                    let mut telegrams = Vec::new();
                    self.telegrams.push(&plain, &mut telegrams);
                    out.extend(telegrams.into_iter().map(|t| t.map_err(SmartyError::from)));
                }
                Err(e) => out.push(Err(e)),
            }
        }
    }

    /// The next whole frame's plaintext, or why it has none; `None` until more bytes arrive.
    fn next_frame(&mut self) -> Option<Result<Vec<u8>, SmartyError>> {
        loop {
            // Anything before a frame tag is noise or the tail of a frame we joined midway.
            let Some(start) = self.buf.iter().position(|&b| b == TAG) else {
                self.buf.clear();
                return None;
            };
            self.buf.drain(..start);
            if self.buf.len() < HEAD {
                return None;
            }
            let length = usize::from(u16::from_be_bytes([self.buf[HEAD - 2], self.buf[HEAD - 1]]));
            let header = self.buf[1] as usize == TITLE_LEN
                && self.buf[2 + TITLE_LEN] == LONG_LENGTH
                && length >= SECURITY_HEAD + GCM_TAG
                && HEAD + length <= MAX_FRAME;
            if !header {
                // A 0xDB inside ciphertext or noise, not a frame: look for the next one.
                self.buf.drain(..1);
                continue;
            }
            if self.buf.len() < HEAD + length {
                return None;
            }
            let frame: Vec<u8> = self.buf.drain(..HEAD + length).collect();
            return Some(self.open(&frame));
        }
    }

    fn open(&self, frame: &[u8]) -> Result<Vec<u8>, SmartyError> {
        if frame[HEAD] != SECURITY {
            return Err(SmartyError::Frame("security byte is not 0x30"));
        }
        let mut iv = [0u8; 12];
        iv[..TITLE_LEN].copy_from_slice(&frame[2..2 + TITLE_LEN]);
        iv[TITLE_LEN..].copy_from_slice(&frame[HEAD + 1..HEAD + SECURITY_HEAD]);
        let (body, tag) =
            frame[HEAD + SECURITY_HEAD..].split_at(frame.len() - HEAD - SECURITY_HEAD - GCM_TAG);
        let mut plain = body.to_vec();
        let tag = tag
            .try_into()
            .map_err(|_| SmartyError::Frame("short tag"))?;
        Cipher::new(&self.keys.guek.into())
            .decrypt_inout_detached(
                &iv.into(),
                &self.keys.aad(),
                plain.as_mut_slice().into(),
                tag,
            )
            .map_err(|_| SmartyError::Decrypt)?;
        Ok(plain)
    }
}

/// Encrypts `telegram` as meter `title` would for frame `counter`: what a Luxembourg meter
/// sends, for tests and for anyone checking their keys against a capture.
pub fn seal(keys: &SmartyKeys, title: [u8; 8], counter: u32, telegram: &[u8]) -> Vec<u8> {
    let mut iv = [0u8; 12];
    iv[..TITLE_LEN].copy_from_slice(&title);
    iv[TITLE_LEN..].copy_from_slice(&counter.to_be_bytes());
    let mut body = telegram.to_vec();
    let tag = Cipher::new(&keys.guek.into())
        .encrypt_inout_detached(&iv.into(), &keys.aad(), body.as_mut_slice().into())
        .unwrap_or_default();
    let length = u16::try_from(SECURITY_HEAD + body.len() + GCM_TAG).unwrap_or(u16::MAX);
    let mut frame = vec![TAG, TITLE_LEN as u8];
    frame.extend_from_slice(&title);
    frame.push(LONG_LENGTH);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.push(SECURITY);
    frame.extend_from_slice(&counter.to_be_bytes());
    frame.extend_from_slice(&body);
    frame.extend_from_slice(&tag);
    frame
}
