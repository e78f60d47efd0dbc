//! The bot's secret key (kept in a 0600 file by the bot) and its public half (pinned by
//! every meter), with their text forms.

use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, HpkeError, Kem as _, OpModeR, OpModeS, Serializable as _};
use rand::CryptoRng;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::error::{ParseError, SealError, SignatureError};
use crate::rng::Rand09;
use crate::sign::{SignContext, Signature};

/// The HPKE suite of RFC 9180 used for sealing: DHKEM(X25519, HKDF-SHA256).
type Kem = X25519HkdfSha256;
/// The KEM's public key type.
type SealPublic = <Kem as hpke::Kem>::PublicKey;
/// The KEM's private key type (zeroized on drop by `hpke`).
type SealPrivate = <Kem as hpke::Kem>::PrivateKey;
/// The KEM's encapsulated key type, sent in front of each ciphertext.
type Encapped = <Kem as hpke::Kem>::EncappedKey;

/// HPKE `info` for sealed readings: binds every sealed reading to this protocol and version.
pub const SEAL_INFO: &[u8] = b"gridmuc sealed reading v1";

/// Length of the encapsulated X25519 key at the front of a sealed reading.
const ENC_LEN: usize = 32;
/// Length of the ChaCha20-Poly1305 tag at the end of a sealed reading.
const TAG_LEN: usize = 16;
/// Bytes that sealing adds to a plaintext (encapsulated key + tag), for stanza size budgets.
pub const SEAL_OVERHEAD: usize = ENC_LEN + TAG_LEN;

/// Text tag of the secret key file, versioned so a future format is refused, not misread.
const SECRET_PREFIX: &str = "gridmuc-bot-secret-v1:";
/// Text tag of the pinned public key, versioned for the same reason.
const PUBLIC_PREFIX: &str = "gridmuc-bot-v1:";
/// Length of the seed that the secret key file holds.
const SEED_LEN: usize = 32;
/// Length of unpadded base64 for the seed (32 bytes → 43 characters).
const SEED_B64_LEN: usize = 43;

/// HKDF salt for deriving both key pairs from the seed.
const DERIVE_SALT: &[u8] = b"gridmuc-bot-key-v1";
/// HKDF info for the Ed25519 signing key's 32-byte secret.
const DERIVE_SIGNING: &[u8] = b"ed25519 signing key";
/// HKDF info for the input keying material of HPKE's DeriveKeyPair (X25519).
const DERIVE_SEALING: &[u8] = b"hpke x25519 derive-keypair ikm";
/// Fixed input for the probe key that detects small-order X25519 public keys. The probe's
/// secrecy does not matter: it never protects anything.
const PROBE_IKM: &[u8] = b"gridmuc small-order probe v1";

/// The substation bot's long-term secret: signs what the bot says and opens what meters seal.
///
/// It is one random 32-byte seed; HKDF-SHA256 (salt `gridmuc-bot-key-v1`) expands it into
/// the Ed25519 signing key and into the input of RFC 9180's DeriveKeyPair for the X25519
/// key, under distinct `info` strings. One seed keeps the key file short and means the two
/// halves can never be mismatched. The seed, the Ed25519 key and the X25519 key are
/// zeroized on drop (best effort: copies made by the OS or by callers are not).
pub struct BotSecretKey {
    /// The 32-byte seed, kept for [`BotSecretKey::to_text`].
    seed: Zeroizing<[u8; SEED_LEN]>,
    /// Ed25519 signing key (dalek zeroizes it on drop).
    signing: SigningKey,
    /// X25519 HPKE private key (hpke zeroizes it on drop).
    opening: SealPrivate,
    /// The public half, derived once.
    public: BotPublicKey,
}

impl BotSecretKey {
    /// Makes a new bot key from the caller's CSPRNG (sans-IO: this crate never asks the OS).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(seed)
    }

    /// Derives both key pairs from a seed; deterministic, so the file holds only the seed.
    fn from_seed(seed: Zeroizing<[u8; SEED_LEN]>) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(DERIVE_SALT), seed.as_ref());
        let mut signing_secret = Zeroizing::new([0u8; 32]);
        let mut sealing_ikm = Zeroizing::new([0u8; 32]);
        // HKDF-SHA256 refuses only outputs over 255 * 32 bytes; these are 32.
        hk.expand(DERIVE_SIGNING, signing_secret.as_mut())
            .expect("32 bytes is within HKDF-SHA256's output limit");
        hk.expand(DERIVE_SEALING, sealing_ikm.as_mut())
            .expect("32 bytes is within HKDF-SHA256's output limit");
        let signing = SigningKey::from_bytes(&signing_secret);
        let (opening, sealing) = Kem::derive_keypair(sealing_ikm.as_ref());
        let public = BotPublicKey::from_parts(signing.verifying_key(), sealing);
        BotSecretKey {
            seed,
            signing,
            opening,
            public,
        }
    }

    /// One line `gridmuc-bot-secret-v1:<base64url seed>` for the bot's key file (the caller
    /// writes it, with 0600 permissions); zeroized when dropped.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut b64 = Zeroizing::new([0u8; SEED_B64_LEN]);
        let written = URL_SAFE_NO_PAD
            .encode_slice(self.seed.as_ref(), b64.as_mut())
            .expect("43 bytes hold 32 bytes of unpadded base64");
        // Reserve up front so the string never reallocates and leaves a copy behind.
        let mut text = Zeroizing::new(String::with_capacity(SECRET_PREFIX.len() + SEED_B64_LEN));
        text.push_str(SECRET_PREFIX);
        text.extend(b64[..written].iter().map(|&b| char::from(b)));
        text
    }

    /// Reads [`BotSecretKey::to_text`] output (surrounding whitespace, such as the file's
    /// final newline, is ignored). Errors never quote the secret.
    pub fn from_text(text: &str) -> Result<Self, ParseError> {
        let body = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(ParseError::WrongPrefix {
                expected: SECRET_PREFIX,
            })?;
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| ParseError::BadBase64)?,
        );
        if bytes.len() != SEED_LEN {
            return Err(ParseError::WrongLength {
                expected: SEED_LEN,
                found: bytes.len(),
            });
        }
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        seed.copy_from_slice(&bytes);
        Ok(Self::from_seed(seed))
    }

    /// The half to pin in meters' configs and to print for the operator.
    pub fn public(&self) -> BotPublicKey {
        self.public.clone()
    }

    /// Signs `msg` for `context`, so meters can tell the bot's words from an impostor's.
    pub fn sign(&self, context: SignContext, msg: &[u8]) -> Signature {
        let sig = self.signing.sign(&context.signed_bytes(msg));
        Signature::from_bytes(sig.to_bytes())
    }

    /// Opens what a meter sealed with [`BotPublicKey::seal`] under the same `aad`; fails,
    /// never panics, on anything else.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(SealError::Truncated {
                len: sealed.len(),
                min: SEAL_OVERHEAD,
            });
        }
        let (enc, ciphertext) = sealed.split_at(ENC_LEN);
        // Only a length check, and the length is right; map it anyway rather than unwrap.
        let enc = Encapped::from_bytes(enc).map_err(|_| SealError::BadEncapsulatedKey)?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.opening,
            &enc,
            SEAL_INFO,
            ciphertext,
            aad,
        )
        .map_err(|e| match e {
            HpkeError::DecapError => SealError::BadEncapsulatedKey,
            _ => SealError::Unauthentic,
        })
    }
}

impl fmt::Debug for BotSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the public half: Debug output ends up in logs.
        f.debug_struct("BotSecretKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The bot's public key as meters pin it: verifies the bot's signatures, seals readings to it.
///
/// Text form `gridmuc-bot-v1:<base64url, no padding, of 64 bytes>`: the Ed25519 verifying
/// key then the X25519 HPKE public key. Parsing refuses points that no honestly made key
/// has (small-order), so sealing to a parsed key cannot fail.
#[derive(Clone)]
pub struct BotPublicKey {
    /// The 64-byte encoding, kept for display, comparison and fingerprints.
    bytes: [u8; BotPublicKey::LEN],
    /// Ed25519 verifying key.
    verifying: VerifyingKey,
    /// X25519 HPKE public key.
    sealing: SealPublic,
}

impl BotPublicKey {
    /// Length of the binary form: Ed25519 key (32) then X25519 key (32).
    pub const LEN: usize = 64;

    /// Builds the public half from freshly derived keys (always valid).
    fn from_parts(verifying: VerifyingKey, sealing: SealPublic) -> Self {
        let mut bytes = [0u8; Self::LEN];
        bytes[..32].copy_from_slice(verifying.as_bytes());
        bytes[32..].copy_from_slice(&sealing.to_bytes());
        BotPublicKey {
            bytes,
            verifying,
            sealing,
        }
    }

    /// Parses the binary form, refusing what is not a real key (see [`ParseError`]).
    pub fn from_bytes(bytes: &[u8; Self::LEN]) -> Result<Self, ParseError> {
        let mut ed = [0u8; 32];
        ed.copy_from_slice(&bytes[..32]);
        let verifying = VerifyingKey::from_bytes(&ed).map_err(|_| ParseError::NotACurvePoint)?;
        if verifying.is_weak() {
            return Err(ParseError::WeakKey { half: "signing" });
        }
        let x = &bytes[32..];
        let sealing = SealPublic::from_bytes(x).map_err(|_| ParseError::WrongLength {
            expected: 32,
            found: x.len(),
        })?;
        if is_small_order_x25519(x) {
            return Err(ParseError::WeakKey { half: "sealing" });
        }
        Ok(BotPublicKey {
            bytes: *bytes,
            verifying,
            sealing,
        })
    }

    /// The binary form, for callers that carry the key in binary.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        self.bytes
    }

    /// Checks that the bot signed `msg` for `context`; a meter acts on a receipt, refusal
    /// or post only when this returns `Ok`.
    pub fn verify(
        &self,
        context: SignContext,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        // Strict: also refuses a small-order R in the signature, the malleability that
        // plain Ed25519 verification tolerates.
        self.verifying
            .verify_strict(&context.signed_bytes(msg), &sig.to_dalek())
            .map_err(|_| SignatureError::Mismatch)
    }

    /// Seals `plaintext` so only the bot can read it (HPKE base mode, single shot), bound to
    /// `aad` (e.g. the reading id sent in clear). Output: encapsulated key (32) || ciphertext
    /// with tag (len + 16).
    ///
    /// # Panics
    /// Only for a plaintext over ChaCha20-Poly1305's limit of about 256 GiB; the key itself
    /// was checked when parsed or derived.
    pub fn seal<R: CryptoRng + ?Sized>(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        rng: &mut R,
    ) -> Vec<u8> {
        let (enc, ciphertext) =
            hpke::single_shot_seal_with_rng::<ChaCha20Poly1305, HkdfSha256, Kem>(
                &OpModeS::Base,
                &self.sealing,
                SEAL_INFO,
                plaintext,
                aad,
                &mut Rand09(rng),
            )
            .expect("sealing to a checked key fails only past the AEAD's 256 GiB limit");
        let mut out = Vec::with_capacity(ENC_LEN + ciphertext.len());
        out.extend_from_slice(&enc.to_bytes());
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Short id for log lines and for operators to compare by eye: the first 8 bytes of
    /// SHA-256 over the 64-byte key, as `xxxx-xxxx-xxxx-xxxx`. Too short to pin; pin the
    /// full key.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.bytes);
        let mut out = String::with_capacity(19);
        for (i, pair) in digest[..8].chunks(2).enumerate() {
            if i > 0 {
                out.push('-');
            }
            for b in pair {
                out.push_str(&format!("{b:02x}"));
            }
        }
        out
    }
}

/// Whether `x` is an X25519 public key of small order, to which HPKE refuses to seal
/// (RFC 9180 §7.1.4: the shared secret would be all zeros).
///
/// Uses HPKE's own check rather than a home-made point test: decapsulating `x` with any
/// X25519 key yields the all-zero secret exactly when `x` has small order (X25519 secret
/// scalars are multiples of the cofactor), the same condition under which sealing to it
/// would fail.
fn is_small_order_x25519(x: &[u8]) -> bool {
    let Ok(as_enc) = Encapped::from_bytes(x) else {
        return true;
    };
    let (probe, _) = Kem::derive_keypair(PROBE_IKM);
    hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &probe,
        &as_enc,
        SEAL_INFO,
    )
    .is_err()
}

impl PartialEq for BotPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for BotPublicKey {}

impl core::hash::Hash for BotPublicKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl fmt::Display for BotPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.bytes))
    }
}

impl fmt::Debug for BotPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BotPublicKey({self})")
    }
}

impl FromStr for BotPublicKey {
    type Err = ParseError;

    /// Parses the form an operator pastes into a meter's config (whitespace around it ignored).
    fn from_str(text: &str) -> Result<Self, ParseError> {
        let body = text
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or(ParseError::WrongPrefix {
                expected: PUBLIC_PREFIX,
            })?;
        Self::from_bytes(&crate::sign::decode_fixed::<{ Self::LEN }>(body)?)
    }
}

impl serde::Serialize for BotPublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BotPublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
