//! The signed envelope of every private-mode message a bot sends: the message, then the
//! sender's Ed25519 signature over it under [`SignContext::Private`]. The receiver checks it
//! against the key pinned in the shared [`crate::PrivateConfig`] before parsing anything, so
//! whoever holds a bot's nickname (an impostor, a server that routes it elsewhere) cannot
//! feed the helper reports the leader never saw, change an interval's result, or clear a
//! meter's report.

use gridmuc_botkey::{BotPublicKey, BotSecretKey, SignContext, Signature};

use crate::error::SignedError;

/// `msg ‖ signature(msg)`: what a bot hands its driver to send (as base64).
pub fn sign_message(key: &BotSecretKey, mut msg: Vec<u8>) -> Vec<u8> {
    let sig = key.sign(SignContext::Private, &msg);
    msg.extend_from_slice(&sig.to_bytes());
    msg
}

/// The message inside `bytes` if `signer` signed it; never panics.
pub fn open_signed<'a>(signer: &BotPublicKey, bytes: &'a [u8]) -> Result<&'a [u8], SignedError> {
    let split = bytes
        .len()
        .checked_sub(Signature::LEN)
        .ok_or(SignedError::TooShort { len: bytes.len() })?;
    let (msg, sig) = bytes.split_at(split);
    let sig: [u8; Signature::LEN] = sig
        .try_into()
        .map_err(|_| SignedError::TooShort { len: bytes.len() })?;
    signer
        .verify(SignContext::Private, msg, &Signature::from_bytes(sig))
        .map_err(|_| SignedError::NotFromPeer)?;
    Ok(msg)
}
