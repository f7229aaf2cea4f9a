//! A throwaway certificate authority for TLS tests: a CA certificate and
//! leaf certificates for the addresses clients and sluice dial, written as
//! PEM files.
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A CA whose certificate is at [`Ca::cert`].
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
    /// The CA certificate (PEM): what `sslrootcert` / `upstream_ca` point at.
    pub cert: PathBuf,
}

/// A leaf certificate and its key.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its files under `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        fs::create_dir_all(dir).expect("create the PKI directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign the CA");
        let cert = dir.join(format!("{name}-ca.pem"));
        fs::write(&cert, issuer.pem()).expect("write the CA certificate");
        Ca {
            issuer,
            dir: dir.to_owned(),
            name: name.to_owned(),
            cert,
        }
    }

    /// A leaf certificate for `sans` (IP addresses or DNS names), files
    /// named after `leaf`; the key is mode 0600.
    pub fn issue(&self, leaf: &str, sans: &[&str]) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, leaf);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the leaf");
        let cert_path = self.dir.join(format!("{}-{leaf}.pem", self.name));
        let key_path = self.dir.join(format!("{}-{leaf}.key", self.name));
        fs::write(&cert_path, cert.pem()).expect("write the leaf certificate");
        fs::write(&key_path, key.serialize_pem()).expect("write the leaf key");
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).expect("chmod the key");
        Leaf {
            cert: cert_path,
            key: key_path,
        }
    }
}
