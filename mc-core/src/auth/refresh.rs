//! Opaque bearer secrets: refresh tokens and how a rotated token's successor is derived.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// Prefix of refresh tokens, so they are recognisable in logs and secret scanners.
pub(crate) const REFRESH_PREFIX: &str = "mcr_";

/// `prefix` followed by 256 random bits, base64url.
pub(crate) fn random_secret(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("the OS random source failed: {e}")))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Derives successors of rotated refresh tokens: `HMAC-SHA256(key, presented token)`.
///
/// Deriving instead of storing the successor lets a token presented twice within the overlap
/// window (two tabs refreshing at once) get the same successor back, while only hashes are
/// stored. Without the key, a stolen old token does not reveal its successor.
#[derive(Clone)]
pub(crate) struct SuccessorKey([u8; 32]);

impl SuccessorKey {
    /// The key, derived from the access-token secret under a label of its own.
    pub(crate) fn derive(secret: &[u8]) -> Result<Self> {
        hmac_sha256(secret, b"mission-control-relay refresh successor v1").map(Self)
    }

    /// The successor of `presented`.
    pub(crate) fn successor_of(&self, presented: &str) -> Result<String> {
        let mac = hmac_sha256(&self.0, presented.as_bytes())?;
        Ok(format!("{REFRESH_PREFIX}{}", URL_SAFE_NO_PAD.encode(mac)))
    }
}

impl std::fmt::Debug for SuccessorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SuccessorKey(…)")
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .map_err(|e| Error::Internal(format!("HMAC key refused: {e}")))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_prefixed() {
        let a = random_secret(REFRESH_PREFIX).unwrap();
        let b = random_secret(REFRESH_PREFIX).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("mcr_"));
        assert_eq!(a.len(), 4 + 43);
    }

    #[test]
    fn successors_are_deterministic_and_keyed() {
        let k1 = SuccessorKey::derive(&[1; 32]).unwrap();
        let k2 = SuccessorKey::derive(&[2; 32]).unwrap();
        let s = |k: &SuccessorKey, t: &str| k.successor_of(t).unwrap();
        assert_eq!(s(&k1, "mcr_x"), s(&k1, "mcr_x"));
        assert_ne!(s(&k1, "mcr_x"), s(&k1, "mcr_y"));
        assert_ne!(s(&k1, "mcr_x"), s(&k2, "mcr_x"));
        assert!(s(&k1, "mcr_x").starts_with(REFRESH_PREFIX));
    }
}
