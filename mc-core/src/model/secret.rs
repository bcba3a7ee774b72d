//! Hashes of bearer secrets (refresh, registration and relay tokens).

use std::fmt;

use sha2::{Digest, Sha256};

/// The SHA-256 of a bearer secret. Only this is stored, never the secret itself.
///
/// `Debug` prints a short prefix so logs never carry a full hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Hashes a secret as presented by a client.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Wraps 32 bytes read back from a store.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Wraps bytes read back from a store, refusing any length but 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SecretHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_distinct() {
        assert_eq!(SecretHash::of("a"), SecretHash::of("a"));
        assert_ne!(SecretHash::of("a"), SecretHash::of("b"));
        let h = SecretHash::of("abc");
        assert_eq!(SecretHash::from_slice(h.as_bytes()), Some(h));
        assert_eq!(SecretHash::from_slice(&[1, 2, 3]), None);
        // Known SHA-256 test vector.
        assert_eq!(h.as_bytes()[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert!(format!("{h:?}").starts_with("SecretHash(ba7816bf"));
    }
}
