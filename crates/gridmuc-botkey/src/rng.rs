//! Lets the workspace's RNGs (rand 0.9, i.e. rand_core 0.9) drive `hpke` (rand_core 0.10).
//!
//! Why an adapter rather than another RNG: the caller's CSPRNG stays the only source of
//! randomness (seeded in tests, the thread or OS generator in the agents), so this crate
//! never reaches for the OS itself and stays sans-IO. The adapter only forwards calls; it
//! holds no state and generates nothing. Key generation does not need it: it draws a
//! 32-byte seed from the caller's RNG directly (see `BotSecretKey::generate`).

use core::convert::Infallible;

use hpke::rand_core::{TryCryptoRng, TryRng};

/// Borrows a rand 0.9 CSPRNG as a rand_core 0.10 one, for `hpke`'s `*_with_rng` calls.
pub(crate) struct Rand09<'a, R: ?Sized>(pub(crate) &'a mut R);

impl<R: rand::CryptoRng + ?Sized> TryRng for Rand09<'_, R> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

// The caller's generator is a `rand::CryptoRng`, so the borrowed one is cryptographic too.
impl<R: rand::CryptoRng + ?Sized> TryCryptoRng for Rand09<'_, R> {}
