//! Room nicknames: random, readable, and never derived from the account behind them.

use rand::{CryptoRng, Rng};
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// Longest nickname we accept; Prosody's resourceprep limit is 1023 bytes, we stay far below.
pub const MAX_NICK_LEN: usize = 64;

/// A MUC occupant nickname: the only identity of a house anything past the XMPP layer ever sees.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomNick(String);

/// Why a string cannot be a room nickname.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NickError {
    /// Empty or whitespace-only nicknames are refused by MUC services.
    #[error("nickname is empty")]
    Empty,
    /// Bounded so a hostile occupant cannot bloat our per-nick state.
    #[error("nickname is longer than {MAX_NICK_LEN} bytes")]
    TooLong,
    /// Control characters and `/`, `@` would confuse logs and JID handling.
    #[error("nickname contains a forbidden character")]
    BadChar,
}

impl RoomNick {
    /// Validates a nickname that arrived from the network or config.
    pub fn new(s: impl Into<String>) -> Result<RoomNick, NickError> {
        let s = s.into();
        if s.trim().is_empty() {
            return Err(NickError::Empty);
        }
        if s.len() > MAX_NICK_LEN {
            return Err(NickError::TooLong);
        }
        if s.chars().any(|c| c.is_control() || c == '/' || c == '@') {
            return Err(NickError::BadChar);
        }
        Ok(RoomNick(s))
    }

    /// The nickname text, e.g. for the resource part of an occupant JID.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomNick {
    type Error = NickError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RoomNick::new(s)
    }
}

impl From<RoomNick> for String {
    fn from(n: RoomNick) -> String {
        n.0
    }
}

impl fmt::Display for RoomNick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const ADJECTIVES: &[&str] = &[
    "amber", "azure", "bold", "brisk", "calm", "clever", "coral", "crisp", "dusky", "eager",
    "fair", "fleet", "gentle", "golden", "hazel", "humble", "ivory", "jade", "jolly", "keen",
    "lively", "lucid", "mellow", "misty", "noble", "olive", "pale", "plucky", "quiet", "rapid",
    "rosy", "rustic", "sandy", "silver", "sleek", "snowy", "sunny", "swift", "tawny", "tidy",
    "velvet", "vivid", "warm", "wild", "windy", "witty", "young", "zesty",
];

const ANIMALS: &[&str] = &[
    "badger", "beaver", "bison", "crane", "curlew", "dingo", "dove", "eagle", "egret", "falcon",
    "ferret", "finch", "gecko", "heron", "ibis", "jackal", "koala", "lark", "lemur", "lynx",
    "marten", "mink", "moose", "newt", "ocelot", "otter", "owl", "panda", "puffin", "quail",
    "raven", "robin", "salmon", "seal", "shrew", "stoat", "swan", "tapir", "tern", "toad", "trout",
    "vole", "walrus", "weasel", "wombat", "wren", "yak", "zebra",
];

/// Makes readable random nicknames like `amber-otter-4821` from a caller-supplied CSPRNG.
///
/// About 23 million combinations: collisions in a room of thousands are rare but possible,
/// so callers retry on MUC's 409 conflict with [`NickGenerator::generate_avoiding`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NickGenerator;

impl NickGenerator {
    /// Draws one nickname; the RNG must be cryptographically secure so nicknames cannot be predicted.
    pub fn generate<R: Rng + CryptoRng + ?Sized>(&self, rng: &mut R) -> RoomNick {
        let a = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
        let b = ANIMALS[rng.random_range(0..ANIMALS.len())];
        let n: u16 = rng.random_range(1000..10000);
        RoomNick(format!("{a}-{b}-{n}"))
    }

    /// Draws until `taken` says the nickname is free, giving up after `attempts` draws.
    pub fn generate_avoiding<R: Rng + CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        attempts: usize,
        mut taken: impl FnMut(&RoomNick) -> bool,
    ) -> Option<RoomNick> {
        (0..attempts)
            .map(|_| self.generate(rng))
            .find(|nick| !taken(nick))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn generated_nicks_are_valid_and_readable() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for _ in 0..1000 {
            let n = NickGenerator.generate(&mut rng);
            assert!(RoomNick::new(n.as_str()).is_ok());
            let parts: Vec<_> = n.as_str().split('-').collect();
            assert_eq!(parts.len(), 3, "{n}");
            assert!(ADJECTIVES.contains(&parts[0]));
            assert!(ANIMALS.contains(&parts[1]));
            assert_eq!(parts[2].len(), 4);
        }
    }

    #[test]
    fn avoiding_retries_past_taken_names() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let first = NickGenerator.generate(&mut ChaCha20Rng::seed_from_u64(1));
        let got = NickGenerator
            .generate_avoiding(&mut rng, 5, |n| *n == first)
            .unwrap();
        assert_ne!(got, first);
        assert_eq!(NickGenerator.generate_avoiding(&mut rng, 3, |_| true), None);
    }

    #[test]
    fn different_streams_give_different_nicks() {
        let a = NickGenerator.generate(&mut ChaCha20Rng::seed_from_u64(1));
        let b = NickGenerator.generate(&mut ChaCha20Rng::seed_from_u64(2));
        assert_ne!(a, b);
    }

    #[test]
    fn validation() {
        assert_eq!(RoomNick::new(""), Err(NickError::Empty));
        assert_eq!(RoomNick::new("a/b"), Err(NickError::BadChar));
        assert_eq!(RoomNick::new("x".repeat(65)), Err(NickError::TooLong));
    }
}
