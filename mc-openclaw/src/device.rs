//! [`DeviceIdentity`]: the Ed25519 key a client presents to an OpenClaw gateway, and its proof
//! over the gateway's challenge.
//!
//! - the public key goes on the wire as base64url without padding of its raw 32 bytes;
//! - the device id is the lowercase hex SHA-256 of those 32 bytes;
//! - the signature is base64url without padding of Ed25519 over
//!   [`ConnectParams::signed_payload`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use crate::handshake::{Challenge, ConnectParams, DeviceProof};

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

    /// The key stored as base64url text (as [`to_text`](Self::to_text) writes it); `None` if
    /// the text is not a 32-byte key.
    pub fn from_text(text: &str) -> Option<Self> {
        let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()?.try_into().ok()?;
        Some(Self::from_secret(bytes))
    }

    /// The 32-byte secret, to store the key.
    pub fn secret(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The secret as base64url text, to store the key.
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret())
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

    /// The proof for `params` answering `challenge` (`connect.device`).
    pub fn prove(&self, params: &ConnectParams, challenge: &Challenge) -> DeviceProof {
        let id = self.id();
        let payload = params.signed_payload(&id, challenge);
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes());
        DeviceProof {
            id,
            public_key: self.public_key(),
            signature,
            signed_at: challenge.ts,
            nonce: challenge.nonce.clone(),
        }
    }
}

/// The device id of a raw public key.
pub fn device_id(public_key: &[u8]) -> String {
    Sha256::digest(public_key).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::ClientInfo;

    #[test]
    fn the_device_id_is_the_hex_sha256_of_the_raw_key() {
        // A device captured from a real gateway.
        let raw = URL_SAFE_NO_PAD.decode("UvLnTn4KlZiGx73byzqVWOXLWfLgnlDjg2S5ttJ4VRc").unwrap();
        assert_eq!(raw.len(), 32);
        assert_eq!(
            device_id(&raw),
            "5d8dc904daa257e4a18d923f493da23e550a2a41b518b04751e2070c42c849fd"
        );
    }

    #[test]
    fn the_payload_matches_the_documented_v3_form() {
        let client = ClientInfo {
            id: "cli".into(),
            mode: "cli".into(),
            platform: "linux".into(),
            ..ClientInfo::default()
        };
        let mut params = ConnectParams::operator(
            client,
            vec!["operator.read".into(), "operator.write".into()],
            vec![],
        );
        params.auth.token = Some("<token>".into());
        let challenge = Challenge {
            nonce: "da9ef3d2-0d78-4eca-b9d8-f29cd0641bd2".into(),
            ts: 1795307020572,
            extra: Default::default(),
        };
        assert_eq!(
            params.signed_payload("5d8dc904", &challenge),
            "v3|5d8dc904|cli|cli|operator|operator.read,operator.write|1795307020572|<token>|da9ef3d2-0d78-4eca-b9d8-f29cd0641bd2|linux|"
        );
        // Platform and family: trimmed, only A-Z lowered (not other letters).
        params.client.platform = "  Linux ".into();
        params.client.device_family = Some("ÉLITE Box".into());
        let payload = params.signed_payload("id", &challenge);
        assert!(payload.ends_with("|linux|Élite box"), "{payload}");
    }

    #[test]
    fn proofs_verify_and_keys_round_trip() {
        let device = DeviceIdentity::generate().unwrap();
        let again = DeviceIdentity::from_text(&device.to_text()).unwrap();
        assert_eq!(again.id(), device.id());
        assert!(DeviceIdentity::from_text("short").is_none());
        assert_eq!(device.id().len(), 64);
        assert!(device.id().chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(!device.public_key().contains('='), "no padding");

        let mut params =
            ConnectParams::operator(ClientInfo::default(), vec!["operator.read".into()], vec![]);
        params.auth.token = Some("secret-token".into());
        let challenge = Challenge { nonce: "nonce".into(), ts: 42, extra: Default::default() };
        let proof = device.prove(&params, &challenge);
        assert_eq!(
            (proof.signed_at, proof.nonce.as_str(), proof.id.as_str()),
            (42, "nonce", device.id().as_str())
        );
        let signature = URL_SAFE_NO_PAD.decode(&proof.signature).unwrap();
        let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
        let message = params.signed_payload(&device.id(), &challenge);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&device.public_key_bytes()).unwrap();
        assert!(key.verify_strict(message.as_bytes(), &signature).is_ok());
        assert!(!format!("{device:?}").contains(&device.to_text()));
    }
}
