//! Credential injection (`auth = "inject"`) for MySQL and MariaDB: sluice
//! runs both handshakes itself. The workload is admitted by who it is —
//! source network, local uid, and a token when its credential asks for
//! one — and sluice logs in to the database as the credential's
//! `upstream_user` with the vaulted password. The workload never receives
//! that password, and no log line, error or recorded event carries it or
//! the token.
//!
//! Client leg: sluice's own greeting (a fresh nonce, plugin
//! `mysql_native_password`); whatever password the client scrambles
//! against it is ignored. A token is read as a `mysql_clear_password`
//! answer to an AuthSwitchRequest, over TLS only, and compared by its
//! SHA-256 in constant time.
//!
//! Database leg ([`Login`], no I/O): the answer for each plugin the
//! database asks for — `mysql_native_password`, `client_ed25519`,
//! `caching_sha2_password` (fast authentication; full authentication sends
//! the password itself, so only over TLS), `mysql_clear_password` (TLS
//! only) — following AuthSwitchRequests until the database's OK or ERR.
use ring::{
    digest,
    rand::{SecureRandom, SystemRandom},
};
use sluice_config::secrets::{Credential, Secrets, TokenHash};
use sluice_mywire::{
    CodecError,
    auth::{self, AuthSwitch},
    caps,
    handshake::{Greeting, HandshakeResponse},
    response::ErrPacket,
};
use sluice_pgproxy::Workload;
use subtle::ConstantTimeEq;

/// Length of the nonce in sluice's greeting (what every current server
/// sends).
pub(crate) const NONCE_LEN: usize = 20;

/// Capabilities sluice's greeting always offers in injection mode: protocol
/// 4.1, the 20-byte nonce, and plugin names (the switch to
/// `mysql_clear_password` for a token needs them). They shape only the
/// handshake.
const CLIENT_LEG: u64 = caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH;

/// Capabilities of a HandshakeResponse that shape only the handshake:
/// sluice sets them on the database leg as it needs, whatever the client
/// chose. `CAN_HANDLE_EXPIRED_PASSWORDS` stays off there: an expired
/// vaulted password must fail the login (and be logged for the operator),
/// not open a sandbox session the workload cannot use.
const HANDSHAKE_ONLY: u64 = caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::PLUGIN_AUTH_LENENC_DATA
    | caps::CAN_HANDLE_EXPIRED_PASSWORDS;

/// A fresh nonce for sluice's greeting: random bytes folded into 1..=127
/// without `$`, as MySQL's own `generate_user_salt` does (the greeting
/// carries it NUL-terminated, so it may not hold a NUL). None only if the
/// system's random source fails.
pub(crate) fn nonce() -> Option<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut n).ok()?;
    for b in &mut n {
        *b &= 0x7F;
        if *b == 0 || *b == b'$' {
            *b += 1;
        }
    }
    Some(n)
}

/// sluice's greeting to the client: the database's (version, thread id,
/// character set, status), with sluice's nonce, `offered` capabilities
/// (already struck as in passthrough) plus [`CLIENT_LEG`], and
/// `mysql_native_password` as the default plugin.
pub(crate) fn greeting(db: &Greeting, offered: u64, nonce: &[u8; NONCE_LEN]) -> Greeting {
    Greeting {
        capabilities: offered | CLIENT_LEG,
        scramble: nonce.to_vec(),
        auth_plugin: Some(auth::NATIVE.into()),
        ..db.clone()
    }
}

/// Why a workload may not log in: sent to the client as ERR 1045,
/// SQLSTATE 28000, and recorded as the session's end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal(pub(crate) String);

/// The credential for `user` on `target`, if this workload may use it: the
/// same checks as a PostgreSQL session's (the client's network, its local
/// uid).
pub(crate) fn find<'s>(
    secrets: &'s Secrets,
    target: &str,
    user: &str,
    workload: &Workload,
) -> Result<&'s Credential, Refusal> {
    let Some(cred) = secrets.find(target, user) else {
        return Err(Refusal(format!(
            "sluice: no credential for user \"{user}\" on this database"
        )));
    };
    if !cred.clients.is_empty() && !cred.clients.iter().any(|n| n.contains(&workload.addr)) {
        return Err(Refusal(format!(
            "sluice: workload {} may not use the credential for user \"{user}\"",
            workload.addr
        )));
    }
    if !cred.uids.is_empty() && !workload.uid.is_some_and(|u| cred.uids.contains(&u)) {
        let who = workload
            .uid
            .map_or_else(|| "a remote workload".to_owned(), |u| format!("uid {u}"));
        return Err(Refusal(format!(
            "sluice: {who} may not use the credential for user \"{user}\""
        )));
    }
    Ok(cred)
}

/// What sluice does next on the client leg, once the credential is found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// The workload is admitted; tell it OK.
    Admit,
    /// Send this AuthSwitchRequest and read the answer: the token
    /// (`token` true) or, for a client that began with a plugin other than
    /// `mysql_native_password`, an answer sluice ignores.
    Switch {
        /// The request's payload.
        request: Vec<u8>,
        /// The answer is the token.
        token: bool,
    },
    /// The token came with the handshake response (`mysql_clear_password`).
    Token(Vec<u8>),
    /// Refuse.
    Refuse(Refusal),
}

/// Decide the client leg's authentication for `cred` from the client's
/// handshake response; `tls` says whether the client leg is encrypted.
pub(crate) fn client_auth(
    cred: &Credential,
    response: &HandshakeResponse,
    tls: bool,
    nonce: &[u8; NONCE_LEN],
) -> ClientAuth {
    let plugin = response.auth_plugin.as_deref().unwrap_or(auth::NATIVE);
    let switch_to = |plugin: &str| {
        let mut data = nonce.to_vec();
        data.push(0);
        AuthSwitch {
            plugin: plugin.into(),
            data,
        }
        .encode()
    };
    if cred.token_sha256.is_none() {
        // The password the client sent is ignored; a client that began
        // with another plugin is moved to the one the greeting named, as
        // a server would, so it expects the OK that follows.
        return if plugin == auth::NATIVE
            || plugin == auth::CLEAR
            || response.capabilities & caps::PLUGIN_AUTH == 0
        {
            ClientAuth::Admit
        } else {
            ClientAuth::Switch {
                request: switch_to(auth::NATIVE),
                token: false,
            }
        };
    }
    if !tls {
        return ClientAuth::Refuse(Refusal(format!(
            "sluice: user \"{}\" needs a token, and tokens are only accepted over TLS: connect with --ssl (or ssl_mode=REQUIRED)",
            String::from_utf8_lossy(&response.user)
        )));
    }
    if plugin == auth::CLEAR {
        return ClientAuth::Token(cleartext(&response.auth_response).to_vec());
    }
    if response.capabilities & caps::PLUGIN_AUTH == 0 {
        return ClientAuth::Refuse(Refusal(
            "sluice: this client cannot switch authentication plugins, so it cannot send its token; use a client with plugin authentication (MySQL 5.5 or later)".into(),
        ));
    }
    ClientAuth::Switch {
        request: switch_to(auth::CLEAR),
        token: true,
    }
}

/// A `mysql_clear_password` answer without its terminating NUL.
pub(crate) fn cleartext(answer: &[u8]) -> &[u8] {
    answer.strip_suffix(&[0]).unwrap_or(answer)
}

/// Whether `presented` is the token whose SHA-256 is `expected`, compared
/// in constant time.
pub(crate) fn token_matches(expected: &TokenHash, presented: &[u8]) -> bool {
    let got = digest::digest(&digest::SHA256, presented);
    got.as_ref().ct_eq(&expected.0[..]).into()
}

/// The capabilities of sluice's HandshakeResponse to the database: those
/// the client and sluice agreed (`agreed`, struck as in passthrough, SSL
/// as the database leg is), with the handshake-only ones set as sluice
/// needs and the database (`db`) offers.
pub(crate) fn upstream_capabilities(agreed: u64, db: u64) -> u64 {
    (agreed & !HANDSHAKE_ONLY)
        | (db & (caps::SECURE_CONNECTION | caps::PLUGIN_AUTH | caps::PLUGIN_AUTH_LENENC_DATA))
}

/// sluice's HandshakeResponse to the database: the client's database,
/// character set, packet size and connection attributes, with
/// `capabilities`, the credential's upstream user, and the first answer of
/// `login`.
pub(crate) fn upstream_response(
    client: &HandshakeResponse,
    capabilities: u64,
    cred: &Credential,
    login: &mut Login<'_>,
    db: &Greeting,
) -> Result<HandshakeResponse, LoginError> {
    let (plugin, auth_response) = login.first(db)?;
    Ok(HandshakeResponse {
        capabilities,
        user: cred.upstream_user().as_bytes().to_vec(),
        auth_response,
        auth_plugin: Some(plugin.into()),
        zstd_level: None,
        ..client.clone()
    })
}

/// Why sluice could not log in to the database. Never carries the
/// password.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    /// The database said no (its message and error code).
    #[error("the database refused the credential: {0}")]
    Refused(String),
    /// The database asked for a plugin or step sluice cannot answer.
    #[error("the database asked for {0}, which credential injection does not support")]
    Unsupported(String),
    /// Answering would put the password on an unencrypted link.
    #[error(
        "{0} sends the password itself, and the database leg is not encrypted: set upstream_tls = \"require\" or \"verify-full\" on this target"
    )]
    NeedsTls(&'static str),
    /// A packet that has no place in an authentication exchange.
    #[error("unexpected packet during authentication (header 0x{0:02X})")]
    Unexpected(u8),
    /// A malformed AuthSwitchRequest.
    #[error("malformed authentication packet: {0}")]
    Codec(#[from] CodecError),
}

/// What to do with the database's next authentication packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this payload (at the next sequence id).
    Answer(Vec<u8>),
    /// Nothing to send; read on (caching_sha2's fast-auth success comes
    /// before the OK).
    Wait,
    /// The database's OK: logged in.
    Done,
}

/// The database leg's login as a state machine with no I/O: the first
/// answer from the greeting, then one [`Step`] per packet.
pub(crate) struct Login<'a> {
    password: &'a [u8],
    /// The plugin the last answer was made with.
    plugin: String,
    /// The database leg is encrypted: answers that carry the password
    /// itself are allowed.
    tls: bool,
}

impl<'a> Login<'a> {
    /// A login with `cred`'s password; `tls` says whether the database leg
    /// is encrypted.
    pub(crate) fn new(cred: &'a Credential, tls: bool) -> Login<'a> {
        Login {
            password: cred.password.expose().as_bytes(),
            plugin: String::new(),
            tls,
        }
    }

    /// The plugin and answer for the HandshakeResponse: the greeting's
    /// plugin when it is one of the scrambles (`mysql_native_password`,
    /// `caching_sha2_password`), else `mysql_native_password`, as clients
    /// do (the database then switches to the user's plugin with a nonce of
    /// its own).
    fn first(&mut self, db: &Greeting) -> Result<(&'static str, Vec<u8>), LoginError> {
        let plugin = match db.auth_plugin.as_deref() {
            Some(auth::CACHING_SHA2) => auth::CACHING_SHA2,
            _ => auth::NATIVE,
        };
        let answer = self.answer(plugin, &db.scramble)?;
        Ok((plugin, answer))
    }

    /// The answer to a request for `plugin` with `data` (the nonce).
    fn answer(&mut self, plugin: &str, data: &[u8]) -> Result<Vec<u8>, LoginError> {
        self.plugin = plugin.to_owned();
        let pw = self.password;
        Ok(match plugin {
            auth::NATIVE => auth::native_password(pw, data),
            auth::CACHING_SHA2 => auth::caching_sha2(pw, data),
            // MariaDB's nonce is 32 raw bytes: a trailing zero is part of it.
            auth::ED25519 => auth::ed25519(pw, data),
            auth::CLEAR if self.tls => auth::clear_password(pw),
            auth::CLEAR => return Err(LoginError::NeedsTls(auth::CLEAR)),
            other => return Err(LoginError::Unsupported(format!("the `{other}` plugin"))),
        })
    }

    /// What to do with the database's next packet.
    pub(crate) fn next(&mut self, payload: &[u8]) -> Result<Step, LoginError> {
        match payload.first().copied() {
            Some(0x00) => Ok(Step::Done),
            Some(0xFF) => Err(LoginError::Refused(match ErrPacket::parse(payload) {
                Ok(e) => format!("{} ({})", e.message, e.code),
                Err(e) => e.to_string(),
            })),
            Some(auth::AUTH_SWITCH_HEADER) => {
                let switch = AuthSwitch::parse(payload)?;
                self.answer(&switch.plugin, &switch.data).map(Step::Answer)
            }
            Some(auth::MORE_DATA_HEADER) if self.plugin == auth::CACHING_SHA2 => {
                match auth::more_data(payload) {
                    Some([auth::FAST_AUTH_OK]) => Ok(Step::Wait),
                    Some([auth::PERFORM_FULL_AUTH]) if self.tls => {
                        Ok(Step::Answer(auth::clear_password(self.password)))
                    }
                    Some([auth::PERFORM_FULL_AUTH]) => Err(LoginError::NeedsTls(
                        "caching_sha2_password full authentication",
                    )),
                    _ => Err(LoginError::Unsupported(
                        "a caching_sha2_password step other than fast or full authentication"
                            .into(),
                    )),
                }
            }
            Some(other) => Err(LoginError::Unexpected(other)),
            None => Err(LoginError::Unexpected(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sluice_config::Config;

    use super::*;

    const PASSWORD: &str = "vaulted-pw";
    const TOKEN: &str = "workload-token";

    fn secrets() -> Secrets {
        let config = Config::parse(
            "[gateway]\ninterfaces = [\"eth1\"]\n[proxy]\nsecrets_file = \"/s\"\n\
             [tls]\ncert = \"/c\"\nkey = \"/k\"\n\
             [[targets]]\nname = \"db\"\naddress = \"10.0.0.5\"\nport = 3306\nauth = \"inject\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let hash: String = digest::digest(&digest::SHA256, TOKEN.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Secrets::parse(
            &format!(
                "[[credentials]]\ntarget = \"db\"\nuser = \"agent\"\nupstream_user = \"app_rw\"\npassword = \"{PASSWORD}\"\nclients = [\"10.1.0.0/16\"]\n\
                 [[credentials]]\ntarget = \"db\"\nuser = \"local\"\npassword = \"{PASSWORD}\"\nuids = [1001]\n\
                 [[credentials]]\ntarget = \"db\"\nuser = \"bot\"\npassword = \"{PASSWORD}\"\ntoken_sha256 = \"{hash}\"\n"
            ),
            Path::new("s.toml"),
            &config,
        )
        .unwrap()
    }

    fn workload(addr: &str, uid: Option<u32>) -> Workload {
        Workload {
            addr: addr.parse().unwrap(),
            uid,
        }
    }

    /// One line per case: user, workload → the upstream user or the
    /// refusal's words. No refusal may quote the password.
    #[test]
    fn credentials_are_checked_like_postgres() {
        let s = secrets();
        let cases: &[(&str, Workload, Result<&str, &str>)] = &[
            ("agent", workload("10.1.2.3", None), Ok("app_rw")),
            (
                "agent",
                workload("10.2.0.1", None),
                Err("workload 10.2.0.1 may not use the credential for user \"agent\""),
            ),
            ("local", workload("127.0.0.1", Some(1001)), Ok("local")),
            (
                "local",
                workload("127.0.0.1", Some(0)),
                Err("uid 0 may not use the credential"),
            ),
            (
                "local",
                workload("10.1.2.3", None),
                Err("a remote workload may not use"),
            ),
            (
                "nobody",
                workload("10.1.2.3", None),
                Err("no credential for user \"nobody\""),
            ),
            ("bot", workload("192.0.2.1", None), Ok("bot")),
        ];
        for (user, w, want) in cases {
            let got = find(&s, "db", user, w);
            match (got, want) {
                (Ok(c), Ok(u)) => assert_eq!(c.upstream_user(), *u, "{user}"),
                (Err(Refusal(m)), Err(words)) => {
                    assert!(m.contains(words), "{user}: {m}");
                    assert!(!m.contains(PASSWORD));
                }
                (got, want) => panic!("{user} from {w:?}: {:?}, want {want:?}", got.map(|_| ())),
            }
        }
        assert!(find(&s, "other", "agent", &workload("10.1.2.3", None)).is_err());
    }

    #[test]
    fn tokens_compare_by_hash() {
        let s = secrets();
        let hash = s.find("db", "bot").unwrap().token_sha256.unwrap();
        assert!(token_matches(&hash, TOKEN.as_bytes()));
        for wrong in ["", "workload-toke", "workload-token ", "WORKLOAD-TOKEN"] {
            assert!(!token_matches(&hash, wrong.as_bytes()), "{wrong:?}");
        }
        assert_eq!(cleartext(b"tok\0"), b"tok");
        assert_eq!(cleartext(b"tok"), b"tok");
    }

    fn response(plugin: Option<&str>, auth_response: &[u8]) -> HandshakeResponse {
        HandshakeResponse {
            capabilities: caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::CONNECT_WITH_DB
                | caps::CONNECT_ATTRS
                | if plugin.is_some() {
                    caps::PLUGIN_AUTH
                } else {
                    0
                },
            max_packet: 1 << 24,
            charset: 45,
            user: b"bot".to_vec(),
            auth_response: auth_response.to_vec(),
            database: Some(b"shop".to_vec()),
            auth_plugin: plugin.map(Into::into),
            attributes: vec![(b"program_name".to_vec(), b"mysql".to_vec())],
            zstd_level: None,
        }
    }

    /// One line per case: credential, client's plugin, TLS → what sluice
    /// does on the client leg.
    #[test]
    fn client_leg_decisions() {
        let s = secrets();
        let (plain, bot) = (s.find("db", "agent").unwrap(), s.find("db", "bot").unwrap());
        let nonce = [b'n'; NONCE_LEN];
        let switch = |plugin: &str| {
            let mut data = nonce.to_vec();
            data.push(0);
            AuthSwitch {
                plugin: plugin.into(),
                data,
            }
            .encode()
        };
        let cases: Vec<(&Credential, Option<&str>, bool, ClientAuth)> = vec![
            // Any password, any leg: admitted.
            (plain, Some(auth::NATIVE), false, ClientAuth::Admit),
            (plain, None, true, ClientAuth::Admit),
            (plain, Some(auth::CLEAR), false, ClientAuth::Admit),
            // A client that began with another plugin is moved to native.
            (
                plain,
                Some(auth::CACHING_SHA2),
                false,
                ClientAuth::Switch {
                    request: switch(auth::NATIVE),
                    token: false,
                },
            ),
            // A token: over TLS only, asked for as a cleartext password.
            (
                bot,
                Some(auth::NATIVE),
                true,
                ClientAuth::Switch {
                    request: switch(auth::CLEAR),
                    token: true,
                },
            ),
            (
                bot,
                Some(auth::CLEAR),
                true,
                ClientAuth::Token(b"sent".to_vec()),
            ),
        ];
        for (cred, plugin, tls, want) in cases {
            let r = response(plugin, b"sent\0");
            assert_eq!(
                client_auth(cred, &r, tls, &nonce),
                want,
                "{} {plugin:?} tls={tls}",
                cred.user
            );
        }
        for plugin in [Some(auth::NATIVE), Some(auth::CLEAR)] {
            let ClientAuth::Refuse(Refusal(m)) =
                client_auth(bot, &response(plugin, b"x"), false, &nonce)
            else {
                panic!("a token without TLS must be refused");
            };
            assert!(
                m.contains("only accepted over TLS") && m.contains("--ssl"),
                "{m}"
            );
        }
        assert!(matches!(
            client_auth(bot, &response(None, b"x"), true, &nonce),
            ClientAuth::Refuse(_)
        ));
    }

    #[test]
    fn nonces_are_fresh_and_printable() {
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        assert_ne!(a, b);
        assert!(a.iter().all(|&c| (1..=127).contains(&c) && c != b'$'));
        // sluice's greeting carries it and round-trips.
        let db = Greeting {
            protocol: 10,
            server_version: b"5.5.5-10.11.6-MariaDB".to_vec(),
            connection_id: 7,
            scramble: vec![b'd'; 20],
            capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::SSL,
            charset: 45,
            status: 2,
            auth_plugin: None,
        };
        let g = greeting(&db, caps::PROTOCOL_41 | caps::SECURE_CONNECTION, &a);
        let parsed = Greeting::parse(&g.encode()).unwrap();
        assert_eq!(parsed.scramble, a);
        assert_eq!(parsed.auth_plugin.as_deref(), Some(auth::NATIVE));
        assert_eq!(parsed.connection_id, 7);
        assert!(parsed.capabilities & caps::PLUGIN_AUTH != 0);
        assert!(parsed.capabilities & caps::SSL == 0);
    }

    #[test]
    fn the_database_gets_the_clients_session_as_the_upstream_user() {
        let s = secrets();
        let cred = s.find("db", "agent").unwrap();
        let mut client = response(Some(auth::CACHING_SHA2), b"ignored");
        client.capabilities |= caps::CAN_HANDLE_EXPIRED_PASSWORDS | caps::DEPRECATE_EOF;
        let db_caps = caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::PLUGIN_AUTH_LENENC_DATA
            | caps::CONNECT_WITH_DB
            | caps::CONNECT_ATTRS
            | caps::DEPRECATE_EOF;
        let db = Greeting {
            protocol: 10,
            server_version: b"8.0.36".to_vec(),
            connection_id: 9,
            scramble: (1..=20).collect(),
            capabilities: db_caps,
            charset: 255,
            status: 2,
            auth_plugin: Some(auth::NATIVE.into()),
        };
        let c = upstream_capabilities(client.capabilities & !caps::PLUGIN_AUTH, db_caps);
        assert!(c & caps::PLUGIN_AUTH != 0, "sluice follows plugin switches");
        assert!(c & caps::PLUGIN_AUTH_LENENC_DATA != 0);
        assert!(c & caps::CAN_HANDLE_EXPIRED_PASSWORDS == 0);
        assert!(c & caps::DEPRECATE_EOF != 0);
        let mut login = Login::new(cred, false);
        let r = upstream_response(&client, c, cred, &mut login, &db).unwrap();
        let parsed = HandshakeResponse::parse(&r.encode()).unwrap();
        assert_eq!(parsed.user, b"app_rw");
        assert_eq!(parsed.database.as_deref(), Some(&b"shop"[..]));
        assert_eq!(parsed.charset, 45);
        assert_eq!(parsed.attribute(b"program_name"), Some(&b"mysql"[..]));
        assert_eq!(parsed.auth_plugin.as_deref(), Some(auth::NATIVE));
        assert_eq!(
            parsed.auth_response,
            auth::native_password(PASSWORD.as_bytes(), &db.scramble)
        );
        let debug = format!("{parsed:?}");
        assert!(!debug.contains(PASSWORD));
    }

    fn switch(plugin: &str, data: &[u8]) -> Vec<u8> {
        AuthSwitch {
            plugin: plugin.into(),
            data: data.to_vec(),
        }
        .encode()
    }

    /// The database leg, one exchange per case: the greeting's plugin, TLS,
    /// the database's packets → sluice's answers, ending in Done or an
    /// error naming why.
    #[test]
    fn the_database_leg_answers_every_supported_plugin() {
        let s = secrets();
        let cred = s.find("db", "agent").unwrap();
        let pw = PASSWORD.as_bytes();
        let scramble: Vec<u8> = (1..=20).collect();
        let mut nul_nonce = vec![7u8; 31];
        nul_nonce.push(0);
        let ok = vec![0u8, 0, 0, 2, 0, 0, 0];
        type Case = (
            &'static str,
            Option<&'static str>,
            bool,
            Vec<(Vec<u8>, Result<Step, &'static str>)>,
        );
        let cases: Vec<Case> = vec![
            (
                "native",
                Some(auth::NATIVE),
                false,
                vec![(ok.clone(), Ok(Step::Done))],
            ),
            (
                "native, then switched to ed25519 (a nonce ending in 0)",
                Some(auth::NATIVE),
                false,
                vec![
                    (
                        switch(auth::ED25519, &nul_nonce),
                        Ok(Step::Answer(auth::ed25519(pw, &nul_nonce))),
                    ),
                    (ok.clone(), Ok(Step::Done)),
                ],
            ),
            (
                "caching_sha2 fast",
                Some(auth::CACHING_SHA2),
                false,
                vec![
                    (vec![1, auth::FAST_AUTH_OK], Ok(Step::Wait)),
                    (ok.clone(), Ok(Step::Done)),
                ],
            ),
            (
                "caching_sha2 full over TLS",
                Some(auth::CACHING_SHA2),
                true,
                vec![
                    (
                        vec![1, auth::PERFORM_FULL_AUTH],
                        Ok(Step::Answer(auth::clear_password(pw))),
                    ),
                    (ok.clone(), Ok(Step::Done)),
                ],
            ),
            (
                "caching_sha2 full without TLS",
                Some(auth::CACHING_SHA2),
                false,
                vec![(vec![1, auth::PERFORM_FULL_AUTH], Err("upstream_tls"))],
            ),
            (
                "switched to caching_sha2",
                Some("auth_gssapi_client"),
                false,
                vec![
                    (
                        switch(auth::CACHING_SHA2, b"abcdefghijklmnopqrst\0"),
                        Ok(Step::Answer(auth::caching_sha2(
                            pw,
                            b"abcdefghijklmnopqrst",
                        ))),
                    ),
                    (vec![1, auth::FAST_AUTH_OK], Ok(Step::Wait)),
                    (ok.clone(), Ok(Step::Done)),
                ],
            ),
            (
                "cleartext over TLS",
                None,
                true,
                vec![(
                    switch(auth::CLEAR, b""),
                    Ok(Step::Answer(auth::clear_password(pw))),
                )],
            ),
            (
                "cleartext without TLS",
                None,
                false,
                vec![(switch(auth::CLEAR, b""), Err("not encrypted"))],
            ),
            (
                "an unknown plugin",
                None,
                true,
                vec![(
                    switch("auth_gssapi_client", b"x"),
                    Err("`auth_gssapi_client`"),
                )],
            ),
            (
                "refused",
                Some(auth::NATIVE),
                false,
                vec![(
                    ErrPacket::new(1045, "28000", "Access denied for user 'app_rw'@'10.0.0.1'")
                        .encode(),
                    Err("Access denied for user 'app_rw'@'10.0.0.1' (1045)"),
                )],
            ),
            (
                "an RSA key request is not answered",
                Some(auth::CACHING_SHA2),
                true,
                vec![(
                    b"\x01-----BEGIN PUBLIC KEY-----".to_vec(),
                    Err("fast or full"),
                )],
            ),
            (
                "more data outside caching_sha2",
                Some(auth::NATIVE),
                true,
                vec![(vec![1, 3], Err("header 0x01"))],
            ),
        ];
        for (name, plugin, tls, exchange) in cases {
            let db = Greeting {
                protocol: 10,
                server_version: b"x".to_vec(),
                connection_id: 1,
                scramble: scramble.clone(),
                capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH,
                charset: 45,
                status: 2,
                auth_plugin: plugin.map(Into::into),
            };
            let mut login = Login::new(cred, tls);
            let (first_plugin, first) = login.first(&db).unwrap();
            let want_first = if plugin == Some(auth::CACHING_SHA2) {
                auth::caching_sha2(pw, &scramble)
            } else {
                auth::native_password(pw, &scramble)
            };
            assert_eq!(first, want_first, "{name}: first answer ({first_plugin})");
            for (packet, want) in exchange {
                match (login.next(&packet), want) {
                    (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                    (Err(e), Err(words)) => {
                        let e = e.to_string();
                        assert!(e.contains(words), "{name}: {e}");
                        assert!(!e.contains(PASSWORD), "{name}: {e}");
                    }
                    (got, want) => panic!("{name}: {got:?}, want {want:?}"),
                }
            }
        }
    }
}
