//! OIDC against a real OpenID provider (`oidc-provider` on 127.0.0.1, started
//! by `sluice_lab::oidc`): valid tokens and their roles, every refusal with
//! its own `TokenError`, key rotation and the refetch rate limit, and
//! `sluice login`'s device flow end to end. Tokens are real: the scripted
//! user signs in through the provider's own device flow pages.
//!
//! No root needed, except for the last test (a provider inside a network
//! namespace, as the approval tests run it). Without `tests/oidc/node_modules` the tests skip (or fail
//! under `SLUICE_REQUIRE_PRIVILEGED=1`); `cargo xtask setup` installs it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use sluice_lab::oidc::{Jwt, Options, Provider};
use sluice_oidc::{
    OidcConfig, OidcError, Role, RoleMap, TokenError, Verifier, device_login, load_token,
    save_token,
};

fn config(provider: &Provider) -> OidcConfig {
    let mut c = OidcConfig::new(provider.issuer(), vec!["sluice-cli".into()]);
    c.roles = RoleMap {
        admin: vec!["sluice-admins".into()],
        approver: vec!["sluice-approvers".into()],
        auditor: vec!["sluice-auditors".into()],
    };
    c.client_id = Some("sluice-cli".into());
    c
}

async fn verifier(config: &OidcConfig) -> Verifier {
    Verifier::discover(config)
        .await
        .unwrap_or_else(|e| panic!("discovery of {}: {e}", config.issuer))
}

/// The refusal, and that its message quotes no part of the token.
async fn refused(v: &Verifier, token: &str) -> TokenError {
    let e = v
        .verify(token)
        .await
        .expect_err("the token must be refused");
    let text = format!("{e} {e:?}");
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!text.contains(part), "the error quotes the token: {text}");
    }
    e
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn valid_tokens_are_accepted_with_their_roles() {
    let Some(p) = Provider::start("valid_tokens_are_accepted_with_their_roles") else {
        return;
    };
    let v = verifier(&config(&p)).await;
    use Role::*;
    let cases: &[(&str, &[&str], &[Role])] = &[
        ("alice", &["sluice-approvers"], &[Approver]),
        (
            "bob",
            &["sluice-admins", "sluice-approvers"],
            &[Admin, Approver],
        ),
        ("carol", &["staff"], &[]),
        ("dave", &["sluice-auditors"], &[Auditor]),
        // `groups` as a single string, not an array.
        ("erin", &["sluice-approvers"], &[Approver]),
        // Any login name signs in; this one has no groups claim at all.
        ("mallory", &[], &[]),
    ];
    for (login, groups, roles) in cases {
        let token = p.id_token("sluice-cli", login);
        let c = v
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{login}: {e}"));
        assert_eq!(c.subject, *login);
        assert_eq!(c.issuer, p.issuer());
        assert_eq!(c.audience, ["sluice-cli"]);
        assert_eq!(c.email.as_deref(), Some(&*format!("{login}@example.test")));
        assert_eq!(c.principal(), format!("{login}@example.test"));
        assert_eq!(c.preferred_username.as_deref(), Some(*login));
        assert_eq!(c.groups, *groups, "{login}");
        assert_eq!(c.roles, *roles, "{login}");
        assert!(c.expires_at > unix_now(), "{login}: exp in the past");
        assert!(c.expires_at <= unix_now() + 700, "{login}: exp too far");
        for role in Role::ALL {
            assert_eq!(c.has(role), roles.contains(&role), "{login} {role}");
        }
    }
}

#[tokio::test]
async fn wrong_audience_is_rejected() {
    let Some(p) = Provider::start("wrong_audience_is_rejected") else {
        return;
    };
    let token = p.id_token("other-app", "alice");
    let v = verifier(&config(&p)).await;
    assert_eq!(refused(&v, &token).await, TokenError::WrongAudience);
    // The same token is fine for a verifier that accepts that audience.
    let mut both = config(&p);
    both.audience.push("other-app".into());
    let c = verifier(&both).await.verify(&token).await.unwrap();
    assert_eq!(c.audience, ["other-app"]);
}

#[tokio::test]
async fn wrong_issuer_is_rejected() {
    let Some(p) = Provider::start("wrong_issuer_is_rejected") else {
        return;
    };
    let Some(other) = Provider::start("wrong_issuer_is_rejected_other") else {
        return;
    };
    let v = verifier(&config(&p)).await;
    let foreign = other.id_token("sluice-cli", "alice");
    assert_eq!(refused(&v, &foreign).await, TokenError::WrongIssuer);
    // The iss check comes before any key lookup: the foreign key id made
    // no refetch of our issuer's keys.
    assert_eq!(p.jwks_requests(), 1);
    // A token that claims our issuer but was signed by the other provider's
    // key is caught by the signature check instead.
    let mut forged = Jwt::parse(&foreign);
    forged.payload["iss"] = json!(p.issuer());
    let forged = forged.with_payload(&forged.payload.clone());
    assert!(matches!(
        refused(&v, &forged).await,
        TokenError::UnknownKey | TokenError::BadSignature
    ));
}

#[tokio::test]
async fn bad_signature_is_rejected() {
    let Some(p) = Provider::start("bad_signature_is_rejected") else {
        return;
    };
    let v = verifier(&config(&p)).await;
    let token = p.id_token("sluice-cli", "carol");
    assert!(v.verify(&token).await.is_ok());
    let jwt = Jwt::parse(&token);
    assert_eq!(
        refused(&v, &jwt.with_flipped_signature()).await,
        TokenError::BadSignature
    );
    // Carol promotes herself: the signature no longer covers the payload.
    let mut payload = jwt.payload.clone();
    payload["groups"] = json!(["sluice-admins"]);
    assert_eq!(
        refused(&v, &jwt.with_payload(&payload)).await,
        TokenError::BadSignature
    );
}

#[tokio::test]
async fn alg_none_and_symmetric_algorithms_are_rejected() {
    let Some(p) = Provider::start("alg_none_and_symmetric_algorithms_are_rejected") else {
        return;
    };
    let v = verifier(&config(&p)).await;
    let jwt = Jwt::parse(&p.id_token("sluice-cli", "bob"));
    assert_eq!(jwt.header["alg"], "RS256");
    let none = jwt.with_header(&json!({"alg": "none", "typ": "JWT"}), "");
    assert_eq!(refused(&v, &none).await, TokenError::UnsupportedAlgorithm);
    let mut kept_kid = jwt.header.clone();
    kept_kid["alg"] = json!("none");
    let none = jwt.with_header(&kept_kid, "");
    assert_eq!(refused(&v, &none).await, TokenError::UnsupportedAlgorithm);
    // HS256 "signed" with something public (here: the old signature bytes).
    kept_kid["alg"] = json!("HS256");
    let hs = jwt.with_header(&kept_kid, &jwt.signature);
    assert_eq!(refused(&v, &hs).await, TokenError::UnsupportedAlgorithm);
    // Not a JWT at all.
    assert_eq!(refused(&v, "not-a-token").await, TokenError::Malformed);
    assert_eq!(refused(&v, "a.b.c").await, TokenError::Malformed);
}

#[tokio::test]
async fn expired_tokens_are_rejected() {
    let Some(p) = Provider::start_with(
        "expired_tokens_are_rejected",
        Options {
            id_token_ttl: Some(2),
            ..Options::default()
        },
    ) else {
        return;
    };
    let mut strict = config(&p);
    strict.leeway_secs = 0;
    let v = verifier(&strict).await;
    let lenient = verifier(&config(&p)).await; // 60 s leeway
    let token = p.id_token("sluice-cli", "alice");
    let exp = v.verify(&token).await.expect("fresh token").expires_at;
    // Bounded wait: exp is at most 2 s away, plus one second of rounding.
    let deadline = Instant::now() + Duration::from_secs(5);
    while unix_now() <= exp {
        assert!(Instant::now() < deadline, "the clock did not pass exp");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(refused(&v, &token).await, TokenError::Expired);
    // Within the leeway the same token still passes.
    assert!(lenient.verify(&token).await.is_ok());
}

#[tokio::test]
async fn missing_required_group_is_rejected() {
    let Some(p) = Provider::start("missing_required_group_is_rejected") else {
        return;
    };
    let mut c = config(&p);
    c.required_groups = vec!["sluice-approvers".into(), "sluice-admins".into()];
    let v = verifier(&c).await;
    let carol = p.id_token("sluice-cli", "carol");
    match refused(&v, &carol).await {
        TokenError::MissingGroup(which) => {
            assert_eq!(which, "one of `sluice-approvers`, `sluice-admins`");
        }
        other => panic!("expected MissingGroup, got {other:?}"),
    }
    let nobody = p.id_token("sluice-cli", "mallory");
    assert!(matches!(
        refused(&v, &nobody).await,
        TokenError::MissingGroup(_)
    ));
    assert!(v.verify(&p.id_token("sluice-cli", "alice")).await.is_ok());
    assert!(v.verify(&p.id_token("sluice-cli", "erin")).await.is_ok());
}

#[tokio::test]
async fn rotated_keys_are_fetched_on_demand_and_rate_limited() {
    let Some(p) = Provider::start("rotated_keys_are_fetched_on_demand_and_rate_limited") else {
        return;
    };
    let v = verifier(&config(&p)).await;
    let discovered = Instant::now();
    assert_eq!(p.jwks_requests(), 1);
    let a = p.id_token("sluice-cli", "alice");
    let old_kid = Jwt::parse(&a).header["kid"].clone();
    assert!(v.verify(&a).await.is_ok(), "token A with the first key");

    let new_kid = p.rotate_keys();
    let b = p.id_token("sluice-cli", "bob");
    assert_eq!(Jwt::parse(&b).header["kid"], json!(new_kid));
    assert_ne!(json!(new_kid), old_kid);

    // A flood of tokens naming unknown keys right after a fetch: none of
    // them may make the verifier fetch again.
    let jwt = Jwt::parse(&a);
    for i in 0..50 {
        let mut h = jwt.header.clone();
        h["kid"] = json!(format!("forged-{i}"));
        let forged = jwt.with_header(&h, &jwt.signature);
        assert_eq!(refused(&v, &forged).await, TokenError::UnknownKey);
    }
    if discovered.elapsed() < Duration::from_secs(4) {
        // Still inside the refetch window: B's key is not known yet.
        assert_eq!(refused(&v, &b).await, TokenError::UnknownKey);
    }
    assert_eq!(p.jwks_requests(), 1, "unknown keys refetched within 5 s");

    // Once the window has passed, B's unknown kid triggers one refetch.
    let window = sluice_oidc::MIN_REFETCH + Duration::from_millis(300);
    tokio::time::sleep(window.saturating_sub(discovered.elapsed())).await;
    let c = v.verify(&b).await.expect("token B after the rotation");
    assert_eq!(c.roles, [Role::Admin, Role::Approver]);
    assert_eq!(p.jwks_requests(), 2);
    // The same verifier, clones included, keeps verifying with the new keys
    // without fetching again.
    let clone = v.clone();
    assert!(clone.verify(&b).await.is_ok());
    // The old key was withdrawn: A no longer verifies, and asking again
    // right away fetches nothing.
    assert_eq!(refused(&v, &a).await, TokenError::UnknownKey);
    assert_eq!(p.jwks_requests(), 2);
}

#[tokio::test]
async fn keys_are_refreshed_every_jwks_refresh_secs() {
    let Some(p) = Provider::start("keys_are_refreshed_every_jwks_refresh_secs") else {
        return;
    };
    let mut c = config(&p);
    c.jwks_refresh_secs = 5;
    let v = verifier(&c).await;
    let discovered = Instant::now();
    let a = p.id_token("sluice-cli", "alice");
    assert!(v.verify(&a).await.is_ok());
    p.rotate_keys();
    // A's key is still cached: without a refresh it would keep verifying.
    assert!(v.verify(&a).await.is_ok());
    assert_eq!(p.jwks_requests(), 1);
    let period = Duration::from_secs(5) + Duration::from_millis(300);
    tokio::time::sleep(period.saturating_sub(discovered.elapsed())).await;
    // The periodic refresh drops the withdrawn key.
    assert_eq!(refused(&v, &a).await, TokenError::UnknownKey);
    assert_eq!(p.jwks_requests(), 2);
}

#[tokio::test]
async fn device_login_against_the_real_provider() {
    let Some(p) = Provider::start("device_login_against_the_real_provider") else {
        return;
    };
    let c = config(&p);
    let started = Instant::now();
    let mut approval = None;
    let tokens = device_login(&c, |prompt| {
        assert!(prompt.verification_uri.starts_with(p.issuer()));
        assert!(!prompt.user_code.is_empty());
        assert!(prompt.expires_in > 0);
        let complete = prompt
            .verification_uri_complete
            .as_deref()
            .expect("oidc-provider offers verification_uri_complete");
        assert!(complete.starts_with(p.issuer()));
        // The "person" signs in on another device while the CLI polls.
        approval = Some(p.approve(complete, "bob"));
    })
    .await
    .expect("device login");
    approval.expect("prompt was called").finish();
    eprintln!("device login took {:?}", started.elapsed());
    assert!(tokens.expires_at > unix_now());
    assert!(!format!("{tokens:?}").contains(&tokens.id_token));

    // The cached token file round-trips, private, and the token it holds
    // is what the admin API will see.
    let dir = sluice_lab::Scratch::new(&format!("oidc-login-{}", std::process::id()));
    let path = dir.path("config/sluice/token.json");
    save_token(&path, &tokens).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let loaded = load_token(&path).unwrap();
    assert_eq!(loaded, tokens);
    let claims = verifier(&c).await.verify(&loaded.id_token).await.unwrap();
    assert_eq!(claims.subject, "bob");
    assert_eq!(claims.roles, [Role::Admin, Role::Approver]);
}

#[tokio::test]
async fn device_login_refuses_a_user_lacking_required_groups() {
    let Some(p) = Provider::start("device_login_refuses_a_user_lacking_required_groups") else {
        return;
    };
    let mut c = config(&p);
    c.required_groups = vec!["sluice-admins".into()];
    let mut approval = None;
    let e = device_login(&c, |prompt| {
        let complete = prompt.verification_uri_complete.as_deref().unwrap();
        approval = Some(p.approve(complete, "carol"));
    })
    .await
    .expect_err("carol is not an admin");
    approval.expect("prompt was called").finish();
    assert!(
        matches!(e, OidcError::Token(TokenError::MissingGroup(_))),
        "{e:?}"
    );
    assert!(e.to_string().contains("sluice-admins"), "{e}");
}

#[tokio::test]
async fn discovery_failures_name_the_issuer() {
    let Some(p) = Provider::start("discovery_failures_name_the_issuer") else {
        return;
    };
    // The document's issuer must match the configured one exactly.
    let mut slash = config(&p);
    slash.issuer = format!("{}/", p.issuer());
    match Verifier::discover(&slash).await {
        Err(OidcError::Discovery { issuer, .. }) => assert_eq!(issuer, slash.issuer),
        other => panic!("expected a discovery error, got {other:?}"),
    }
    // Nothing listens: a prompt, named failure, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nowhere = OidcConfig::new(format!("http://127.0.0.1:{port}"), vec!["x".into()]);
    let started = Instant::now();
    let e = Verifier::discover(&nowhere).await.unwrap_err();
    assert!(matches!(e, OidcError::Discovery { .. }), "{e:?}");
    assert!(e.to_string().contains(&nowhere.issuer), "{e}");
    assert!(started.elapsed() < Duration::from_secs(11));
    // An invalid configuration is refused before any request.
    let mut bad = config(&p);
    bad.audience.clear();
    let e = Verifier::discover(&bad).await.unwrap_err();
    assert!(
        matches!(e, OidcError::Config { ref key, .. } if key == "audience"),
        "{e:?}"
    );
}

/// The harness as `tests/tests/approvals.rs` uses it: the provider on a lab
/// namespace's loopback, tokens fetched from inside. Only the harness is
/// under test here (sluice itself runs inside such a namespace there).
#[test]
fn provider_runs_inside_a_network_namespace() {
    if !sluice_lab::require_privileged("provider_runs_inside_a_network_namespace") {
        return;
    }
    let ns = sluice_lab::netns::Netns::create(&format!("sl-oidc-{}", std::process::id()));
    let Some(p) = Provider::start_with(
        "provider_runs_inside_a_network_namespace",
        Options {
            netns: Some(ns.path()),
            ..Options::default()
        },
    ) else {
        return;
    };
    // Not reachable from the host's loopback...
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", p.port())).is_err(),
        "the provider must listen inside the namespace only"
    );
    // ...but the harness works from inside.
    let jwt = Jwt::parse(&p.id_token("sluice-cli", "dave"));
    assert_eq!(jwt.payload["iss"], json!(p.issuer()));
    assert_eq!(jwt.payload["groups"], json!(["sluice-auditors"]));
    assert_eq!(p.jwks_requests(), 0);
    let kid = p.rotate_keys();
    let rotated = Jwt::parse(&p.id_token("sluice-cli", "dave"));
    assert_eq!(rotated.header["kid"], json!(kid));
}
