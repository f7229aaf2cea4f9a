//! TLS on both legs, with rustls (ring provider).
//!
//! Client leg: sluice answers SSLRequest with `S` and terminates TLS with a
//! configured certificate; that certificate must name what clients dial
//! (the database's address), so `sslmode=verify-full` clients check it
//! against the CA that issued it. Database leg: sluice sends its own
//! SSLRequest and verifies the database as libpq's `sslmode` would.
use std::{net::IpAddr, path::Path, sync::Arc};

use tokio_rustls::{
    TlsAcceptor, TlsConnector,
    rustls::{
        self, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        crypto::{CryptoProvider, ring},
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    },
};

/// Why TLS material could not be used. Names the file and what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// rustls refused the material (e.g. a key that does not match).
    #[error("{what}: {source}")]
    Rustls {
        /// What was being built.
        what: &'static str,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// `upstream_server_name` is not a valid DNS name or address.
    #[error("`{0}` is not a valid server name")]
    ServerName(String),
}

/// ALPN protocol PostgreSQL 17+ uses; older clients send none.
const ALPN: &[u8] = b"postgresql";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = |message: String| TlsSetupError::Pem {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found".into(),
        ));
    }
    Ok(certs)
}

/// The client-leg acceptor for `cert` (PEM chain, leaf first) and `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsSetupError> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::Pem {
        path: key.display().to_string(),
        message: format!("no usable private key: {e}"),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsSetupError::Rustls {
            what: "client-leg TLS",
            source,
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|source| TlsSetupError::Rustls {
            what: "client-leg certificate and key",
            source,
        })?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How sluice speaks TLS to one database.
#[derive(Clone)]
pub enum UpstreamTls {
    /// Plain TCP.
    Disable,
    /// TLS when offered, unverified; plain otherwise.
    Prefer(TlsConnector),
    /// TLS or nothing, unverified.
    Require(TlsConnector),
    /// TLS with the chain and the name verified.
    VerifyFull {
        /// Verifies against the configured CA.
        connector: TlsConnector,
        /// Name to check, if not the dialled address.
        server_name: Option<ServerName<'static>>,
    },
}

impl UpstreamTls {
    /// Build the database-leg settings for a target.
    pub fn new(
        mode: sluice_config::UpstreamTls,
        ca: Option<&Path>,
        server_name: Option<&str>,
    ) -> Result<UpstreamTls, TlsSetupError> {
        use sluice_config::UpstreamTls as Mode;
        let unverified = || -> Result<TlsConnector, TlsSetupError> {
            let config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|source| TlsSetupError::Rustls {
                    what: "database-leg TLS",
                    source,
                })?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider())))
                .with_no_client_auth();
            Ok(TlsConnector::from(Arc::new(config)))
        };
        Ok(match mode {
            Mode::Disable => UpstreamTls::Disable,
            Mode::Prefer => UpstreamTls::Prefer(unverified()?),
            Mode::Require => UpstreamTls::Require(unverified()?),
            Mode::VerifyFull => {
                let ca = ca.ok_or_else(|| TlsSetupError::Pem {
                    path: "upstream_ca".into(),
                    message: "verify-full needs a CA bundle".into(),
                })?;
                let mut roots = RootCertStore::empty();
                for cert in certs(ca)? {
                    roots.add(cert).map_err(|source| TlsSetupError::Rustls {
                        what: "database CA",
                        source,
                    })?;
                }
                let config = ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|source| TlsSetupError::Rustls {
                        what: "database-leg TLS",
                        source,
                    })?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let server_name = server_name
                    .map(|n| {
                        ServerName::try_from(n.to_owned())
                            .map_err(|_| TlsSetupError::ServerName(n.to_owned()))
                    })
                    .transpose()?;
                UpstreamTls::VerifyFull {
                    connector: TlsConnector::from(Arc::new(config)),
                    server_name,
                }
            }
        })
    }

    /// The connector and the name to present and check, or None for plain.
    pub fn connector(&self, dialled: IpAddr) -> Option<(&TlsConnector, ServerName<'static>)> {
        let ip = ServerName::IpAddress(dialled.into());
        match self {
            UpstreamTls::Disable => None,
            UpstreamTls::Prefer(c) | UpstreamTls::Require(c) => Some((c, ip)),
            UpstreamTls::VerifyFull {
                connector,
                server_name,
            } => Some((connector, server_name.clone().unwrap_or(ip))),
        }
    }

    /// Whether a database that declines TLS ends the session.
    pub fn required(&self) -> bool {
        matches!(
            self,
            UpstreamTls::Require(_) | UpstreamTls::VerifyFull { .. }
        )
    }

    /// The libpq-style mode name, for messages.
    pub fn mode(&self) -> &'static str {
        match self {
            UpstreamTls::Disable => "disable",
            UpstreamTls::Prefer(_) => "prefer",
            UpstreamTls::Require(_) => "require",
            UpstreamTls::VerifyFull { .. } => "verify-full",
        }
    }
}

/// `sslmode=require` semantics: encrypt, but accept any certificate. The
/// handshake signatures are still checked, so the peer holds the key of
/// the certificate it shows.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
