//! Credential injection: sluice admits the workload by who it is (source
//! network, local uid, optionally a token) and logs in to the database with
//! a vaulted credential. The workload never receives the database password,
//! and no log line carries it.
use bytes::{BufMut, BytesMut};
use postgres_protocol::authentication::{
    md5_hash,
    sasl::{ChannelBinding, ScramSha256},
};
use sha2::{Digest, Sha256};
use sluice_config::secrets::{Credential, Secrets};
use sluice_pgwire::{
    BackendMessage, FrameReader, FrontendMessage, backend::Authentication, wire::put_message,
};
use subtle::ConstantTimeEq;

use crate::{
    PgError, Workload,
    io::Conn,
    startup::{read_frame, write},
};

/// A refusal to send the client before closing: SQLSTATE and message.
pub(crate) struct Refusal {
    pub sqlstate: &'static str,
    pub message: String,
}

/// Find the credential for this workload, checking who it is and, when the
/// credential asks for one, its token (read as a cleartext password, only
/// over TLS).
pub(crate) async fn admit<'s>(
    client: &mut Conn,
    cbuf: &mut BytesMut,
    reader: &FrameReader,
    secrets: &'s Secrets,
    target: &str,
    user: &str,
    workload: &Workload,
) -> Result<Result<&'s Credential, Refusal>, PgError> {
    let refuse = |sqlstate, message: String| Ok(Err(Refusal { sqlstate, message }));
    let Some(cred) = secrets.find(target, user) else {
        return refuse(
            "28000",
            format!("sluice: no credential for user \"{user}\" on this database"),
        );
    };
    if !cred.clients.is_empty() && !cred.clients.iter().any(|n| n.contains(&workload.addr)) {
        return refuse(
            "28000",
            format!(
                "sluice: workload {} may not use the credential for user \"{user}\"",
                workload.addr
            ),
        );
    }
    if !cred.uids.is_empty() && !workload.uid.is_some_and(|u| cred.uids.contains(&u)) {
        let who = workload
            .uid
            .map_or_else(|| "a remote workload".to_owned(), |u| format!("uid {u}"));
        return refuse(
            "28000",
            format!("sluice: {who} may not use the credential for user \"{user}\""),
        );
    }
    let Some(expected) = cred.token_sha256 else {
        return Ok(Ok(cred));
    };
    if !client.is_tls() {
        return refuse(
            "28000",
            format!(
                "sluice: user \"{user}\" needs a token, and tokens are only accepted over TLS: connect with sslmode=require"
            ),
        );
    }
    let mut out = BytesMut::new();
    BackendMessage::Authentication(Authentication::CleartextPassword).encode(&mut out);
    write(client, &out, "client").await?;
    let Some(frame) = read_frame(client, cbuf, reader, true, "client").await? else {
        return Err(PgError::ClientGone);
    };
    let presented = match frame.tag {
        b'p' => FrontendMessage::password(&frame.body).ok(),
        _ => None,
    };
    // Compared in constant time, as the MySQL engine does.
    let ok = presented.is_some_and(|t| {
        bool::from(
            Sha256::digest(t.as_bytes())
                .as_slice()
                .ct_eq(&expected.0[..]),
        )
    });
    if !ok {
        return refuse(
            "28P01",
            format!("sluice: token authentication failed for user \"{user}\""),
        );
    }
    Ok(Ok(cred))
}

/// Why sluice could not log in to the database.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    /// The database said no (its message; it never contains the password).
    #[error("the database refused the credential: {0}")]
    Refused(String),
    /// The database asked for something sluice cannot answer.
    #[error("the database asked for {0}, which credential injection does not support")]
    Unsupported(&'static str),
    /// SCRAM failed (bad server proof, malformed exchange).
    #[error("SCRAM-SHA-256: {0}")]
    Scram(std::io::Error),
    /// A socket or protocol error.
    #[error(transparent)]
    Session(#[from] PgError),
}

/// Answer the database's authentication requests with `cred` until it says
/// AuthenticationOk. SCRAM's final message proves the server knew the
/// password too.
pub(crate) async fn login(
    upstream: &mut Conn,
    ubuf: &mut BytesMut,
    reader: &FrameReader,
    cred: &Credential,
) -> Result<(), LoginError> {
    let password = cred.password.expose().as_bytes();
    let mut scram: Option<ScramSha256> = None;
    // Bounded: SCRAM is three round trips.
    for _ in 0..8 {
        let Some(frame) = read_frame(upstream, ubuf, reader, true, "upstream").await? else {
            return Err(PgError::Io {
                leg: "upstream",
                source: std::io::ErrorKind::UnexpectedEof.into(),
            }
            .into());
        };
        let msg = BackendMessage::decode(frame).map_err(|source| PgError::Protocol {
            leg: "upstream",
            source,
        })?;
        let mut out = BytesMut::new();
        match msg {
            BackendMessage::Authentication(Authentication::Ok) => return Ok(()),
            BackendMessage::Authentication(Authentication::CleartextPassword) => {
                password_message(&mut out, password);
            }
            BackendMessage::Authentication(Authentication::Md5Password(salt)) => {
                let hash = md5_hash(cred.upstream_user().as_bytes(), password, salt);
                password_message(&mut out, hash.as_bytes());
            }
            BackendMessage::Authentication(Authentication::Sasl(mechs)) => {
                if !mechs.iter().any(|m| m == "SCRAM-SHA-256") {
                    return Err(LoginError::Unsupported(
                        "a SASL mechanism other than SCRAM-SHA-256",
                    ));
                }
                let s = ScramSha256::new(password, ChannelBinding::unsupported());
                put_message(&mut out, b'p', |b| {
                    b.put_slice(b"SCRAM-SHA-256\0");
                    b.put_i32(s.message().len() as i32);
                    b.put_slice(s.message());
                });
                scram = Some(s);
            }
            BackendMessage::Authentication(Authentication::SaslContinue(data)) => {
                let s = scram_step(&mut scram)?;
                s.update(&data).map_err(LoginError::Scram)?;
                put_message(&mut out, b'p', |b| b.put_slice(s.message()));
            }
            BackendMessage::Authentication(Authentication::SaslFinal(data)) => {
                scram_step(&mut scram)?
                    .finish(&data)
                    .map_err(LoginError::Scram)?;
                continue;
            }
            BackendMessage::Authentication(
                Authentication::Gss | Authentication::GssContinue(_) | Authentication::Sspi,
            ) => return Err(LoginError::Unsupported("GSSAPI/SSPI")),
            BackendMessage::Authentication(Authentication::KerberosV5) => {
                return Err(LoginError::Unsupported("Kerberos V5"));
            }
            BackendMessage::ErrorResponse(fields) => {
                let text = fields
                    .iter()
                    .find(|(k, _)| *k == b'M')
                    .map_or_else(String::new, |(_, v)| v.clone());
                return Err(LoginError::Refused(text));
            }
            _ => {
                return Err(LoginError::Session(PgError::Protocol {
                    leg: "upstream",
                    source: sluice_pgwire::CodecError::malformed(
                        "authentication",
                        "unexpected message before AuthenticationOk",
                    ),
                }));
            }
        }
        write(upstream, &out, "upstream").await?;
    }
    Err(LoginError::Unsupported("more than 8 authentication steps"))
}

fn scram_step(scram: &mut Option<ScramSha256>) -> Result<&mut ScramSha256, LoginError> {
    scram.as_mut().ok_or_else(|| {
        LoginError::Scram(std::io::Error::other(
            "SASL continuation without a SASL start",
        ))
    })
}

fn password_message(out: &mut BytesMut, password: &[u8]) {
    put_message(out, b'p', |b| {
        b.put_slice(password);
        b.put_u8(0);
    });
}

/// SHA-256 of a token, as the 64 hex digits the secrets file holds.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
