//! The VDAF verify key that the leader and the helper share, and how the leader hands it to
//! the helper over the room.
//!
//! Prio3's robustness rests on this key: the aggregators derive their query randomness from
//! it, and a meter that knew it could craft an invalid measurement whose proof passes.
//! Privacy does not depend on it. So it must be (1) the same at both aggregators, (2) secret
//! from meters and the XMPP server, (3) accepted by the helper only from the pinned leader.
//!
//! Agreement: the leader generates it once per task ([`VerifyKey::generate`], kept in its
//! state file beside its bot key) and sends the helper a [`VerifyKey::offer`]: the key
//! sealed to the helper's pinned HPKE key (with the task id as associated data), then the
//! whole offer signed with the leader's Ed25519 key. The helper checks the signature against
//! the leader's key pinned in the same config and opens it ([`VerifyKey::accept`]). A new
//! configuration is a new task id, so it needs a new offer. Operators who prefer may instead
//! agree on the 32 bytes out of band and use [`VerifyKey::from_bytes`] on both sides.
//!
//! The signature reuses the bot key's `Post` context over bytes that start with
//! `gridmuc-private-verify-key-v1\0`. A signed post is the text body of an XMPP message and
//! XML 1.0 cannot carry U+0000, so no post can ever be these bytes, nor the reverse.

use core::fmt;

use gridmuc_botkey::{BotSecretKey, SignContext, Signature};
use rand::CryptoRng;
use zeroize::Zeroizing;

use crate::config::PrivateConfig;
use crate::error::KeyOfferError;
use crate::wire::{Kind, Reader, Writer};

/// Domain prefix of the offer's associated data and signed bytes.
const OFFER_DOMAIN: &[u8] = b"gridmuc-private-verify-key-v1\0";

/// The 32-byte Prio3 verify key shared by the two aggregators; wiped on drop, redacted in
/// `Debug`.
#[derive(Clone)]
pub struct VerifyKey(Zeroizing<[u8; 32]>);

impl VerifyKey {
    /// A fresh key from the caller's CSPRNG, made once by the leader per task.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(k.as_mut());
        VerifyKey(k)
    }

    /// Wraps bytes agreed out of band or read from the aggregator's state file.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        VerifyKey(Zeroizing::new(bytes))
    }

    /// The raw key, for the aggregator's state file (0600); wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.0.clone()
    }

    /// The key as prio takes it.
    pub(crate) fn as_array(&self) -> &[u8; 32] {
        &self.0
    }

    /// Leader side: the key sealed to the helper and signed by the leader, bound to `cfg`'s
    /// task. Wire: `01 06 tag[4]`, sealed key (u16 length prefix), signature (64 bytes).
    pub fn offer<R: CryptoRng + ?Sized>(
        &self,
        cfg: &PrivateConfig,
        leader: &BotSecretKey,
        rng: &mut R,
    ) -> Vec<u8> {
        let aad = offer_aad(cfg);
        let sealed = cfg.params().helper.seal(&aad, self.0.as_ref(), rng);
        let sig = leader.sign(SignContext::Post, &signed_bytes(cfg, &sealed));
        let mut w = Writer::new(Kind::VerifyKeyOffer, cfg.task_tag(), sealed.len() + 66);
        w.field(&sealed);
        w.raw(&sig.to_bytes());
        w.0
    }

    /// Helper side: accepts an offer only if the pinned leader signed it for this task and
    /// it opens with the helper's key.
    pub fn accept(
        cfg: &PrivateConfig,
        helper: &BotSecretKey,
        offer: &[u8],
    ) -> Result<Self, KeyOfferError> {
        let (mut r, tag) = Reader::open(offer, Kind::VerifyKeyOffer)?;
        let sealed = r.field()?;
        let sig = Signature::from_bytes(r.array()?);
        r.finish()?;
        if tag != cfg.task_tag() {
            return Err(KeyOfferError::WrongTask);
        }
        cfg.params()
            .leader
            .verify(SignContext::Post, &signed_bytes(cfg, &sealed), &sig)
            .map_err(|_| KeyOfferError::NotFromLeader)?;
        let key = Zeroizing::new(helper.open(&offer_aad(cfg), &sealed)?);
        let bytes: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| KeyOfferError::KeyLength { found: key.len() })?;
        Ok(VerifyKey::from_bytes(bytes))
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyKey([redacted])")
    }
}

/// Associated data of the sealed key: domain and task id.
fn offer_aad(cfg: &PrivateConfig) -> Vec<u8> {
    let mut aad = OFFER_DOMAIN.to_vec();
    aad.extend_from_slice(&cfg.task_id());
    aad
}

/// What the leader signs: domain, task id, sealed key.
fn signed_bytes(cfg: &PrivateConfig, sealed: &[u8]) -> Vec<u8> {
    let mut m = offer_aad(cfg);
    m.extend_from_slice(sealed);
    m
}
