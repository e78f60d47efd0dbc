//! The cryptographic building blocks, each domain-separated by a BLAKE3 `derive_key` context.
//!
//! * Pairwise masks: ChaCha12 keystream keyed by KDF(X25519(a, B) ‖ cohort); the mask for
//!   round `r` is 64-bit word `r` of the stream, so it is random-access for the bot's
//!   unmasking and sequential rounds reuse the generator's 4-block SIMD buffer.
//! * Self-masks: a Naor–Pinkas–Reingold threshold PRF `F(b, r) = b · H(cohort, r)` on
//!   Ristretto255; `b` is Shamir-shared over the group order ℓ (a prime field), so survivors
//!   hand the bot `share · H(r)` for one round only and never the key itself.
//! * Share transport: ChaCha20-Poly1305 under a second key derived from the same X25519 secret.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::wire::{KEY_LEN, POINT_LEN, Roster, SEALED_LEN};

const CTX_COHORT: &str = "gridmuc-mask v0 2026-11 cohort context";
const CTX_PAIR_MASK: &str = "gridmuc-mask v0 2026-11 pairwise mask seed";
const CTX_PAIR_SEAL: &str = "gridmuc-mask v0 2026-11 share sealing key";
const CTX_ROUND_BASE: &str = "gridmuc-mask v0 2026-11 round base point";
const CTX_SELF_MASK: &str = "gridmuc-mask v0 2026-11 self mask";

/// Hash binding room, cohort id and every member key; all derived keys depend on it, so a
/// meter given a different roster than its peers simply fails to cancel masks.
pub(crate) fn cohort_context(room: &[u8], roster: &Roster) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(CTX_COHORT);
    h.update(&(room.len() as u64).to_le_bytes());
    h.update(room);
    h.update(&roster.cohort);
    h.update(&(roster.keys.len() as u64).to_le_bytes());
    roster.keys.iter().for_each(|k| {
        h.update(k);
    });
    *h.finalize().as_bytes()
}

/// A fresh X25519 secret from the caller's CSPRNG.
pub(crate) fn new_secret<R: CryptoRng + ?Sized>(rng: &mut R) -> StaticSecret {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    StaticSecret::from(bytes)
}

/// What one member shares with one peer: a mask stream and a sealing key.
pub(crate) struct Pair {
    stream: ChaCha12Rng,
    seal: ChaCha20Poly1305,
    /// +1 if this member's index is below the peer's, so the pair's masks cancel in the sum.
    adds: bool,
}

impl Pair {
    /// Derives the pair from X25519; `None` if the peer key is low-order (no shared secret).
    pub(crate) fn derive(
        secret: &StaticSecret,
        peer_key: &[u8; KEY_LEN],
        context: &[u8; 32],
        adds: bool,
    ) -> Option<Pair> {
        let shared = secret.diffie_hellman(&PublicKey::from(*peer_key));
        if !shared.was_contributory() {
            return None;
        }
        let kdf = |ctx: &str| {
            let mut h = blake3::Hasher::new_derive_key(ctx);
            h.update(shared.as_bytes());
            h.update(context);
            *h.finalize().as_bytes()
        };
        Some(Pair {
            stream: ChaCha12Rng::from_seed(kdf(CTX_PAIR_MASK)),
            seal: ChaCha20Poly1305::new(Key::from_slice(&kdf(CTX_PAIR_SEAL))),
            adds,
        })
    }

    /// This member's signed pairwise mask for `round` (the peer computes its negation).
    pub(crate) fn mask(&mut self, round: u64) -> u64 {
        let pos = u128::from(round) * 2;
        if self.stream.get_word_pos() != pos {
            self.stream.set_word_pos(pos);
        }
        let m = self.stream.next_u64();
        if self.adds { m } else { m.wrapping_neg() }
    }

    /// Encrypts a share from `from` to `to`; the (from, to) nonce is unique per pair key.
    pub(crate) fn seal(
        &self,
        from: u16,
        to: u16,
        share: &Scalar,
        ctx: &[u8; 32],
    ) -> [u8; SEALED_LEN] {
        let mut out = [0u8; SEALED_LEN];
        let (body, tag_out) = out.split_at_mut(32);
        body.copy_from_slice(share.as_bytes());
        let tag = self
            .seal
            .encrypt_in_place_detached(&nonce(from, to), ctx, body)
            .expect("a 32-byte plaintext is far below ChaCha20-Poly1305's length limit");
        tag_out.copy_from_slice(&tag);
        out
    }

    /// Decrypts and validates a share; `None` if forged, misrouted or not a canonical scalar.
    pub(crate) fn open(
        &self,
        from: u16,
        to: u16,
        sealed: &[u8; SEALED_LEN],
        ctx: &[u8; 32],
    ) -> Option<Scalar> {
        let pt = self
            .seal
            .decrypt(
                &nonce(from, to),
                Payload {
                    msg: sealed,
                    aad: ctx,
                },
            )
            .ok()?;
        let bytes: [u8; 32] = pt.as_slice().try_into().ok()?;
        Option::from(Scalar::from_canonical_bytes(bytes))
    }
}

fn nonce(from: u16, to: u16) -> Nonce {
    let mut n = [0u8; 12];
    n[..2].copy_from_slice(&from.to_le_bytes());
    n[2..4].copy_from_slice(&to.to_le_bytes());
    *Nonce::from_slice(&n)
}

/// `H(cohort, round)`: the public base of the threshold PRF, fixed per round so a meter can
/// never be made to evaluate its share on a base the bot chose.
pub(crate) fn round_base(context: &[u8; 32], round: u64) -> RistrettoPoint {
    let mut h = blake3::Hasher::new_derive_key(CTX_ROUND_BASE);
    h.update(context);
    h.update(&round.to_le_bytes());
    let mut wide = [0u8; 64];
    h.finalize_xof().fill(&mut wide);
    RistrettoPoint::from_uniform_bytes(&wide)
}

/// The 64-bit self-mask derived from the PRF value `b · H(r)`.
pub(crate) fn self_mask(context: &[u8; 32], prf_value: &RistrettoPoint) -> u64 {
    let mut h = blake3::Hasher::new_derive_key(CTX_SELF_MASK);
    h.update(context);
    h.update(prf_value.compress().as_bytes());
    let mut word = [0u8; 8];
    h.finalize_xof().fill(&mut word);
    u64::from_le_bytes(word)
}

/// A uniformly random scalar (self-mask key or polynomial coefficient).
pub(crate) fn random_scalar<R: CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Shamir x-coordinate of a member: index + 1, never zero.
fn x_of(member: u16) -> Scalar {
    Scalar::from(u64::from(member) + 1)
}

/// Splits `secret` into `holders` shares, any `threshold` of which recover it.
pub(crate) fn shamir_split<R: CryptoRng + ?Sized>(
    secret: Scalar,
    threshold: u16,
    holders: u16,
    rng: &mut R,
) -> Vec<Scalar> {
    let coeffs: Vec<Scalar> = std::iter::once(secret)
        .chain((1..threshold).map(|_| random_scalar(rng)))
        .collect();
    (0..holders)
        .map(|m| {
            let x = x_of(m);
            coeffs.iter().rev().fold(Scalar::ZERO, |acc, c| acc * x + c)
        })
        .collect()
}

/// Lagrange coefficients at zero for the given holders.
pub(crate) fn lagrange_at_zero(holders: &[u16]) -> Vec<Scalar> {
    holders
        .iter()
        .map(|&i| {
            let xi = x_of(i);
            let (num, den) = holders.iter().filter(|&&j| j != i).fold(
                (Scalar::ONE, Scalar::ONE),
                |(num, den), &j| {
                    let xj = x_of(j);
                    (num * xj, den * (xj - xi))
                },
            );
            num * den.invert()
        })
        .collect()
}

/// Interpolates `b · H` "in the exponent" from evaluations `share_i · H`; `None` if a point
/// does not decompress.
pub(crate) fn combine_evaluations(
    coefficients: &[Scalar],
    points: &[[u8; POINT_LEN]],
) -> Option<RistrettoPoint> {
    let decompressed: Option<Vec<RistrettoPoint>> = points
        .iter()
        .map(|p| CompressedRistretto(*p).decompress())
        .collect();
    Some(RistrettoPoint::vartime_multiscalar_mul(
        coefficients,
        decompressed?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn shamir_threshold_recovers_in_the_exponent_and_fewer_do_not() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let secret = random_scalar(&mut rng);
        let shares = shamir_split(secret, 4, 7, &mut rng);
        let base = round_base(&[0; 32], 5);
        let eval = |set: &[u16]| {
            let points: Vec<[u8; 32]> = set
                .iter()
                .map(|&i| (shares[usize::from(i)] * base).compress().to_bytes())
                .collect();
            combine_evaluations(&lagrange_at_zero(set), &points).unwrap()
        };
        assert_eq!(eval(&[0, 2, 5, 6]), secret * base);
        assert_eq!(eval(&[1, 3, 4, 5]), secret * base);
        assert_ne!(eval(&[1, 3, 4]), secret * base);
    }

    #[test]
    fn pairwise_masks_cancel_and_differ_per_round() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (a, b) = (new_secret(&mut rng), new_secret(&mut rng));
        let (ka, kb) = (
            PublicKey::from(&a).to_bytes(),
            PublicKey::from(&b).to_bytes(),
        );
        let ctx = [9; 32];
        let mut ab = Pair::derive(&a, &kb, &ctx, true).unwrap();
        let mut ba = Pair::derive(&b, &ka, &ctx, false).unwrap();
        for round in [0, 1, 2, 1_000_000, 3] {
            assert_eq!(ab.mask(round).wrapping_add(ba.mask(round)), 0);
        }
        assert_ne!(ab.mask(1), ab.mask(2));
        let share = random_scalar(&mut rng);
        let sealed = ab.seal(0, 1, &share, &ctx);
        assert_eq!(ba.open(0, 1, &sealed, &ctx), Some(share));
        assert_eq!(ba.open(1, 0, &sealed, &ctx), None, "nonce binds direction");
        assert_eq!(ba.open(0, 1, &sealed, &[8; 32]), None, "aad binds cohort");
    }

    #[test]
    fn low_order_peer_key_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        assert!(Pair::derive(&new_secret(&mut rng), &[0; 32], &[0; 32], true).is_none());
    }
}
