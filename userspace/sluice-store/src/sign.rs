//! The checkpoint signing key: ed25519, generated on first start, the
//! private half readable by its owner only. Verification needs only the
//! public key, which is written beside it (`<key>.pub`), kept in the store,
//! and printed by `sluice audit key`.
use std::{
    fs,
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use ring::{
    rand::SystemRandom,
    signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey},
};

use crate::{
    StoreError,
    codec::{hex, sha256, unhex},
};

/// The private signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public().fingerprint())
    }
}

impl SigningKey {
    /// Load the key at `path`, or create it (mode 0600) and its `.pub`
    /// when there is none. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), StoreError> {
        let key_err = |what: &str, e: std::io::Error| StoreError::Key {
            path: path.to_owned(),
            reason: format!("{what}: {e}"),
        };
        match fs::metadata(path) {
            Ok(meta) => {
                check_private(path, &meta)?;
                let der = fs::read(path).map_err(|e| key_err("cannot read it", e))?;
                let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| StoreError::Key {
                    path: path.to_owned(),
                    reason: "it is not an ed25519 PKCS#8 key".into(),
                })?;
                let key = SigningKey { pair };
                // Recreate a lost public half; never overwrite a present one.
                let pub_path = public_path(path);
                if !pub_path.exists() {
                    key.public().write(&pub_path)?;
                }
                Ok((key, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)
                        .map_err(|e| key_err("cannot create its directory", e))?;
                }
                let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| {
                    StoreError::Key {
                        path: path.to_owned(),
                        reason: "the system random generator failed".into(),
                    }
                })?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| key_err("cannot create it", e))?;
                f.write_all(der.as_ref())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| key_err("cannot write it", e))?;
                let pair =
                    Ed25519KeyPair::from_pkcs8(der.as_ref()).map_err(|_| StoreError::Key {
                        path: path.to_owned(),
                        reason: "the generated key does not load".into(),
                    })?;
                let key = SigningKey { pair };
                key.public().write(&public_path(path))?;
                Ok((key, true))
            }
            Err(e) => Err(key_err("cannot read it", e)),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(k)
    }

    /// Sign a message.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut s = [0u8; 64];
        s.copy_from_slice(self.pair.sign(msg).as_ref());
        s
    }
}

/// A private key must be its owner's alone: no group or other access, and
/// owned by root or by the user sluice runs as.
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    let mode = meta.permissions().mode() & 0o777;
    let me = own_uid();
    if mode & 0o077 != 0 || (meta.uid() != 0 && meta.uid() != me) {
        return Err(StoreError::Key {
            path: path.to_owned(),
            reason: format!(
                "it is mode {mode:o}, owned by uid {}: the signing key must be owned by root (or sluice's user) with mode 600 (chmod 600 {})",
                meta.uid(),
                path.display()
            ),
        });
    }
    Ok(())
}

/// The uid sluice runs as (the owner of its /proc entry).
fn own_uid() -> u32 {
    fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// Where the public half of a key file lives.
pub fn public_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// An ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Text form: `ed25519:<64 hex digits>`.
    pub fn to_text(&self) -> String {
        format!("ed25519:{}", hex(&self.0))
    }

    /// Parse the text form (the `ed25519:` prefix is optional; surrounding
    /// whitespace and `#` comment lines are ignored).
    pub fn parse(text: &str) -> Option<PublicKey> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))?;
        let digits = line.strip_prefix("ed25519:").unwrap_or(line);
        unhex::<32>(digits).map(PublicKey)
    }

    /// Read a public key file.
    pub fn read(path: &Path) -> Result<PublicKey, StoreError> {
        let text = fs::read_to_string(path).map_err(|e| StoreError::Key {
            path: path.to_owned(),
            reason: format!("cannot read it: {e}"),
        })?;
        PublicKey::parse(&text).ok_or_else(|| StoreError::Key {
            path: path.to_owned(),
            reason: "it does not hold an ed25519 public key (ed25519:<64 hex digits>)".into(),
        })
    }

    fn write(&self, path: &Path) -> Result<(), StoreError> {
        let text = format!(
            "# sluice audit checkpoint key, fingerprint {}\n{}\n",
            self.fingerprint(),
            self.to_text()
        );
        fs::write(path, text).map_err(|e| StoreError::Key {
            path: path.to_owned(),
            reason: format!("cannot write the public key: {e}"),
        })
    }

    /// Short fingerprint: the first 16 hex digits of SHA-256 of the key.
    pub fn fingerprint(&self) -> String {
        hex(&sha256(&self.0)[..8])
    }

    /// Whether `signature` is this key's over `msg`.
    pub fn verify(&self, msg: &[u8], signature: &[u8; 64]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_with_mode_600_and_verifies() {
        let dir = std::env::temp_dir().join(format!("sluice-sign-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("audit.key");
        let (key, created) = SigningKey::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, created) = SigningKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(key.public(), again.public());
        let public = PublicKey::read(&public_path(&path)).unwrap();
        assert_eq!(public, key.public());
        let sig = key.sign(b"msg");
        assert!(public.verify(b"msg", &sig));
        assert!(!public.verify(b"msh", &sig));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
