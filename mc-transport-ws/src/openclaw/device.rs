//! [`DeviceIdentity`]: the Ed25519 key a client presents to an OpenClaw gateway, and the
//! signature over the gateway's challenge (OPENCLAW.md §2.3).
//!
//! - the public key goes on the wire as base64url without padding of its raw 32 bytes;
//! - the device id is the lowercase hex SHA-256 of those 32 bytes;
//! - the signature is base64url without padding of Ed25519 over the v3 payload
//!   `v3|<deviceId>|<client.id>|<client.mode>|<role>|<scopes,>|<signedAt ms>|<token>|<nonce>|<platform>|<deviceFamily>`,
//!   `platform` and `deviceFamily` trimmed and ASCII-lowercased.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

/// An Ed25519 device key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct DeviceIdentity {
    key: SigningKey,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity").field("id", &self.id()).finish_non_exhaustive()
    }
}

/// What the signature covers, besides the challenge.
#[derive(Clone, Copy)]
pub struct SignedFields<'a> {
    /// `client.id`.
    pub client_id: &'a str,
    /// `client.mode`.
    pub client_mode: &'a str,
    /// `role`.
    pub role: &'a str,
    /// `scopes`, in the order sent.
    pub scopes: &'a [String],
    /// `auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`, exactly as sent.
    pub token: &'a str,
    /// `client.platform`.
    pub platform: &'a str,
    /// `client.deviceFamily`, if sent.
    pub device_family: &'a str,
}

mc_core::debug_redacted!(SignedFields<'a> { client_id, client_mode, role, scopes, platform, device_family } secret { token });

impl DeviceIdentity {
    /// A new random key (from the OS's random source).
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)?;
        Ok(Self::from_secret(seed))
    }

    /// The key with this 32-byte secret (as [`secret`](Self::secret) gives it, for storage).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self { key: SigningKey::from_bytes(&secret) }
    }

    /// The 32-byte secret, to store the key.
    pub fn secret(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The raw 32-byte public key.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key as sent: base64url without padding.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key_bytes())
    }

    /// The device id: lowercase hex SHA-256 of the raw public key.
    pub fn id(&self) -> String {
        device_id(&self.public_key_bytes())
    }

    /// The signature over the v3 payload for a challenge, base64url without padding.
    pub fn sign(&self, fields: &SignedFields<'_>, signed_at_ms: i64, nonce: &str) -> String {
        let payload = payload_v3(&self.id(), fields, signed_at_ms, nonce);
        URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes())
    }
}

/// The device id of a raw public key.
pub fn device_id(public_key: &[u8]) -> String {
    Sha256::digest(public_key).iter().map(|b| format!("{b:02x}")).collect()
}

/// Trims and lowercases A–Z only, as the gateway does for `platform` and `deviceFamily`.
fn normalize(field: &str) -> String {
    field.trim().chars().map(|c| c.to_ascii_lowercase()).collect()
}

/// The v3 signature payload.
pub fn payload_v3(device_id: &str, f: &SignedFields<'_>, signed_at_ms: i64, nonce: &str) -> String {
    format!(
        "v3|{device_id}|{}|{}|{}|{}|{signed_at_ms}|{}|{nonce}|{}|{}",
        f.client_id,
        f.client_mode,
        f.role,
        f.scopes.join(","),
        f.token,
        normalize(f.platform),
        normalize(f.device_family),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_id_is_the_hex_sha256_of_the_raw_key() {
        // A device captured from a real gateway (OPENCLAW.md §7).
        let raw = URL_SAFE_NO_PAD.decode("UvLnTn4KlZiGx73byzqVWOXLWfLgnlDjg2S5ttJ4VRc").unwrap();
        assert_eq!(raw.len(), 32);
        assert_eq!(
            device_id(&raw),
            "5d8dc904daa257e4a18d923f493da23e550a2a41b518b04751e2070c42c849fd"
        );
    }

    #[test]
    fn the_payload_matches_the_documented_v3_form() {
        let scopes = vec!["operator.read".to_owned(), "operator.write".to_owned()];
        let fields = SignedFields {
            client_id: "cli",
            client_mode: "cli",
            role: "operator",
            scopes: &scopes,
            token: "<token>",
            platform: "linux",
            device_family: "",
        };
        assert_eq!(
            payload_v3("5d8dc904", &fields, 1795307020572, "da9ef3d2-0d78-4eca-b9d8-f29cd0641bd2"),
            "v3|5d8dc904|cli|cli|operator|operator.read,operator.write|1795307020572|<token>|da9ef3d2-0d78-4eca-b9d8-f29cd0641bd2|linux|"
        );
        // Platform and family: trimmed, only A-Z lowered (not other letters).
        let fields = SignedFields { platform: "  Linux ", device_family: "ÉLITE Box", ..fields };
        let payload = payload_v3("id", &fields, 1, "n");
        assert!(payload.ends_with("|n|linux|Élite box"), "{payload}");
    }

    #[test]
    fn signatures_verify_and_keys_round_trip() {
        let device = DeviceIdentity::generate().unwrap();
        let again = DeviceIdentity::from_secret(device.secret());
        assert_eq!(again.id(), device.id());
        assert_eq!(device.id().len(), 64);
        assert!(device.id().chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let public = URL_SAFE_NO_PAD.decode(device.public_key()).unwrap();
        assert_eq!(public, device.public_key_bytes());
        assert!(!device.public_key().contains('='), "no padding");

        let scopes = vec!["operator.read".to_owned()];
        let fields = SignedFields {
            client_id: "gateway-client",
            client_mode: "backend",
            role: "operator",
            scopes: &scopes,
            token: "secret-token",
            platform: "linux",
            device_family: "",
        };
        let signature = URL_SAFE_NO_PAD.decode(device.sign(&fields, 42, "nonce")).unwrap();
        let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
        let message = payload_v3(&device.id(), &fields, 42, "nonce");
        let key = ed25519_dalek::VerifyingKey::from_bytes(&device.public_key_bytes()).unwrap();
        assert!(key.verify_strict(message.as_bytes(), &signature).is_ok());
        assert!(!format!("{device:?}").contains(&format!("{:?}", device.secret())));
    }
}
