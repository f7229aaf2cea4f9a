//! Authentication exchanges: the auth-switch request, "more data" packets,
//! and the client-side scramble of each supported plugin.
//!
//! A proxy that terminates client authentication itself and logs in to the
//! server with its own credentials needs to compute what a real client
//! would send for the server's nonce; these functions do exactly that and
//! nothing else (no RSA: `caching_sha2_password` full authentication over
//! plain TCP needs the server's public key, so a proxy should use TLS or
//! rely on the fast path).
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::error::{CodecError, Result};
use crate::wire::{Reader, put_null_str};

/// `mysql_native_password`: SHA-1 based challenge/response.
pub const NATIVE: &str = "mysql_native_password";
/// `caching_sha2_password`: SHA-256 challenge/response with a server-side
/// cache (MySQL 8's default).
pub const CACHING_SHA2: &str = "caching_sha2_password";
/// MariaDB's `client_ed25519`: an Ed25519 signature of the nonce.
pub const ED25519: &str = "client_ed25519";
/// `mysql_clear_password`: the password itself, NUL-terminated.
pub const CLEAR: &str = "mysql_clear_password";

/// `caching_sha2_password` "more data": the scramble matched the cache.
pub const FAST_AUTH_OK: u8 = 3;
/// `caching_sha2_password` "more data": send the password (TLS) or ask
/// for the public key.
pub const PERFORM_FULL_AUTH: u8 = 4;
/// `caching_sha2_password` client request for the server's RSA key.
pub const REQUEST_PUBLIC_KEY: u8 = 2;

/// Header of an auth-switch request.
pub const AUTH_SWITCH_HEADER: u8 = 0xFE;
/// Header of an auth "more data" packet.
pub const MORE_DATA_HEADER: u8 = 0x01;

/// `mysql_native_password` response:
/// `SHA1(pw) XOR SHA1(scramble[..20] + SHA1(SHA1(pw)))`; an empty
/// password is an empty response.
pub fn native_password(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(nonce(scramble));
    h.update(stage2);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// `caching_sha2_password` response:
/// `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble[..20])`; an empty
/// password is an empty response.
pub fn caching_sha2(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha256::digest(password);
    let stage2 = Sha256::digest(stage1);
    let mut h = Sha256::new();
    h.update(stage2);
    h.update(nonce(scramble));
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// `mysql_clear_password` response: the password and a NUL.
pub fn clear_password(password: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(password.len() + 1);
    put_null_str(&mut out, password);
    out
}

/// MariaDB `client_ed25519` response: the Ed25519 signature of the
/// scramble, with `SHA-512(password)` standing in for the hashed secret
/// seed (so a password of any length is a key). 64 bytes.
pub fn ed25519(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    use ed25519_dalek::hazmat::raw_sign;
    let esk = expanded_key(password);
    let public = ed25519_dalek::VerifyingKey::from(&esk);
    raw_sign::<Sha512>(&esk, scramble, &public)
        .to_bytes()
        .to_vec()
}

/// The Ed25519 public key MariaDB stores for `password` (what
/// `ed25519_password('...')` returns, before base64).
pub fn ed25519_public_key(password: &[u8]) -> [u8; 32] {
    ed25519_dalek::VerifyingKey::from(&expanded_key(password)).to_bytes()
}

fn expanded_key(password: &[u8]) -> ed25519_dalek::hazmat::ExpandedSecretKey {
    let hash: [u8; 64] = Sha512::digest(password).into();
    ed25519_dalek::hazmat::ExpandedSecretKey::from_bytes(&hash)
}

/// The nonce part of a scramble: the first 20 bytes (servers send a
/// trailing NUL that is not part of it).
fn nonce(scramble: &[u8]) -> &[u8] {
    &scramble[..scramble.len().min(20)]
}

/// A request to redo authentication with another plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitch {
    /// The plugin to use.
    pub plugin: String,
    /// Plugin data as sent: for the scramble-based plugins the new nonce
    /// and a trailing NUL (see [`AuthSwitch::scramble`]).
    pub data: Vec<u8>,
}

impl AuthSwitch {
    /// Parse an auth-switch request (`0xFE`, plugin name, NUL, data). A
    /// bare `0xFE` is the pre-4.1 "use the old password hash" request,
    /// which is not supported.
    pub fn parse(payload: &[u8]) -> Result<AuthSwitch> {
        let mut r = Reader::new(payload);
        let header = r.u8()?;
        if header != AUTH_SWITCH_HEADER {
            return Err(CodecError::malformed(format!(
                "auth switch header 0x{header:02X}"
            )));
        }
        if r.is_empty() {
            return Err(CodecError::malformed(
                "old-password auth switch (pre-4.1 hashing) is not supported",
            ));
        }
        let plugin = String::from_utf8_lossy(r.null_str()?).into_owned();
        Ok(AuthSwitch {
            plugin,
            data: r.rest().to_vec(),
        })
    }

    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.plugin.len() + self.data.len());
        out.push(AUTH_SWITCH_HEADER);
        put_null_str(&mut out, self.plugin.as_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// `data` without its trailing NUL: the nonce to scramble against.
    pub fn scramble(&self) -> &[u8] {
        self.data.strip_suffix(&[0]).unwrap_or(&self.data)
    }
}

/// The content of an auth "more data" packet (`0x01` header), e.g. the
/// [`FAST_AUTH_OK`] / [`PERFORM_FULL_AUTH`] byte or a PEM public key.
pub fn more_data(payload: &[u8]) -> Option<&[u8]> {
    match payload.split_first() {
        Some((&MORE_DATA_HEADER, rest)) => Some(rest),
        _ => None,
    }
}

/// Encode an auth "more data" packet.
pub fn encode_more_data(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + data.len());
    out.push(MORE_DATA_HEADER);
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Reference server-side checks, written from the servers' algorithms:
    /// the server stores `SHA1(SHA1(pw))` (native) or `SHA256(SHA256(pw))`
    /// (caching_sha2), recovers `stage1` by XOR and hashes it again.
    #[test]
    fn scrambles_verify_like_the_server_does() {
        let scramble: Vec<u8> = (0..20).map(|i| (i * 7 + 3) as u8).collect();
        let mut with_nul = scramble.clone();
        with_nul.push(0);
        for pw in [&b"secret"[..], b"p", &[0xAA; 100]] {
            let resp = native_password(pw, &with_nul);
            assert_eq!(resp.len(), 20);
            assert_eq!(resp, native_password(pw, &scramble), "trailing NUL ignored");
            let stored = Sha1::digest(Sha1::digest(pw));
            let mut h = Sha1::new();
            h.update(&scramble);
            h.update(stored);
            let stage1: Vec<u8> = resp.iter().zip(h.finalize()).map(|(a, b)| a ^ b).collect();
            assert_eq!(Sha1::digest(&stage1)[..], stored[..]);

            let resp = caching_sha2(pw, &scramble);
            assert_eq!(resp.len(), 32);
            let stored = Sha256::digest(Sha256::digest(pw));
            let mut h = Sha256::new();
            h.update(stored);
            h.update(&scramble);
            let stage1: Vec<u8> = resp.iter().zip(h.finalize()).map(|(a, b)| a ^ b).collect();
            assert_eq!(Sha256::digest(&stage1)[..], stored[..]);
        }
        assert!(native_password(b"", &scramble).is_empty());
        assert!(caching_sha2(b"", &scramble).is_empty());
        assert_eq!(clear_password(b"pw"), b"pw\0");
    }

    /// Known answers computed independently (Python's hashlib, following
    /// the same formulas as PyMySQL's `scramble_native_password` and
    /// `scramble_caching_sha2`).
    #[test]
    fn known_answers() {
        let scramble =
            b"\x2a\x4b\x3e\x11\x70\x6a\x37\x48\x4d\x0c\x65\x19\x6e\x37\x4f\x2e\x54\x5e\x0d\x5d";
        for (f, want) in [
            (
                native_password as fn(&[u8], &[u8]) -> Vec<u8>,
                "f676001dbc0be4ba5049c1e936f2e0dfc5824b02",
            ),
            (
                caching_sha2,
                "7a25791d8f59029b5de0de9cd7840509f3d8fae85e4015b95643eca1177ef18b",
            ),
        ] {
            assert_eq!(hex(&f(b"password", scramble)), want);
        }
    }

    #[test]
    fn ed25519_matches_mariadb() {
        use ed25519_dalek::{Signature, Verifier, VerifyingKey};
        // MariaDB: SELECT ed25519_password('secret') =
        // 'ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY' (base64).
        let public = ed25519_public_key(b"secret");
        assert_eq!(
            hex(&public),
            "648814444520e4f56043a2ec9215e63be7992d2d270bc6dee873e36164786096"
        );
        let scramble: Vec<u8> = (0..32).collect();
        let sig = ed25519(b"secret", &scramble);
        assert_eq!(sig.len(), 64);
        let key = VerifyingKey::from_bytes(&public).unwrap();
        let sig = Signature::from_slice(&sig).unwrap();
        key.verify(&scramble, &sig).unwrap();
        assert!(key.verify(b"other", &sig).is_err());
        assert_ne!(ed25519_public_key(b"Secret"), public);
    }

    #[test]
    fn auth_switch_round_trips() {
        for s in [
            AuthSwitch {
                plugin: NATIVE.into(),
                data: b"0123456789abcdefghij\0".to_vec(),
            },
            AuthSwitch {
                plugin: ED25519.into(),
                data: vec![9; 32],
            },
            AuthSwitch {
                plugin: CLEAR.into(),
                data: vec![],
            },
        ] {
            assert_eq!(AuthSwitch::parse(&s.encode()).unwrap(), s);
        }
        let s = AuthSwitch::parse(b"\xfemysql_native_password\x00abc\x00").unwrap();
        assert_eq!(s.scramble(), b"abc");
        for bad in [&b"\xfe"[..], b"", b"\x01x\x00", b"\xfeno-nul"] {
            assert!(AuthSwitch::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(more_data(b"\x01\x03"), Some(&[FAST_AUTH_OK][..]));
        assert_eq!(
            more_data(&encode_more_data(&[PERFORM_FULL_AUTH])),
            Some(&[4u8][..])
        );
        assert_eq!(more_data(b"\x00"), None);
        assert_eq!(more_data(b""), None);
    }
}
