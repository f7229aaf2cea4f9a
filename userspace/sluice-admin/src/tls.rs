//! HTTPS for the API: rustls with the ring provider, the certificate chain
//! and key from `admin.cert` / `admin.key` (PEM), ALPN `http/1.1`. The same
//! loading as the client leg of the PostgreSQL proxy
//! (`sluice-pgproxy/src/tls.rs`); errors name the file and the key.

use std::{path::Path, sync::Arc};

use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        crypto::ring,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};

use crate::AdminError;

/// The acceptor for `cert` (PEM chain, leaf first) and `key`.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, AdminError> {
    let bad = |what: &str, path: &Path, why: String| {
        AdminError::Tls(format!("admin.{what} {}: {why}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("cert", cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("cert", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(
            "cert",
            cert,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found".into(),
        ));
    }
    // The key's error never quotes the file: it is a secret.
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad("key", key, format!("no usable private key: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| AdminError::Tls(format!("admin TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            AdminError::Tls(format!(
                "admin.cert {} and admin.key {} cannot be used together: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
