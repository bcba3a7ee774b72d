//! TLS for small deployments without a proxy (`mc-server serve --tls-cert --tls-key`):
//! a rustls acceptor from a PEM certificate chain and key.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use tokio_rustls::TlsAcceptor;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file holds no usable certificate.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The key file holds no usable private key.
    #[error("private key: {0}")]
    Key(String),
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// An acceptor serving `cert_pem` (the chain, leaf first) with `key_pem` (PKCS#8, PKCS#1 or
/// SEC1), TLS 1.2 and 1.3, ALPN `http/1.1`.
pub fn acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named_errors() {
        let one = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let (cert, key) = (one.cert.pem(), one.signing_key.serialize_pem());
        assert!(acceptor(cert.as_bytes(), key.as_bytes()).is_ok());
        assert!(matches!(acceptor(b"junk", key.as_bytes()), Err(TlsError::Certificate(_))));
        assert!(matches!(acceptor(key.as_bytes(), key.as_bytes()), Err(TlsError::Certificate(_))));
        assert!(matches!(acceptor(cert.as_bytes(), b"junk"), Err(TlsError::Key(_))));
        let wrong_key = other.signing_key.serialize_pem();
        assert!(matches!(
            acceptor(cert.as_bytes(), wrong_key.as_bytes()),
            Err(TlsError::Config(_))
        ));
    }
}
