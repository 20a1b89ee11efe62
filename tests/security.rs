//! Attacks, by name. Each asserts the exact refusal and that nothing was
//! written. Every case runs on SQLite and PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use genomegate::auth::dev::Ed25519Signer;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

on_both_backends!(
    token_attacks_are_refused,
    accepted_algorithms,
    mutual_tls_binds_token_to_hospital
);

fn claims(org: &str, iss: &str, aud: &str, exp_offset_minutes: i64) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": iss, "aud": aud, "sub": "mallory", "org": org, "roles": ["hospital_staff", "consent_admin"],
           "iat": now, "exp": now + exp_offset_minutes * 60})
}

fn with_kid(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    h
}

async fn token_attacks_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let keys = issuer_keys();
    let roles = vec!["hospital_staff".to_owned()];
    let now = chrono::Utc::now();

    // A key the service has never seen, presented under the trusted kid.
    let forged = Ed25519Signer::generate(EDDSA_KID.into(), ISSUER.into())
        .unwrap()
        .sign(
            AUDIENCE,
            "mallory",
            "hospital-a",
            &roles,
            now,
            chrono::Duration::minutes(5),
        )
        .unwrap();
    // alg=none: header and claims, no signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": EDDSA_KID}).to_string()),
        URL_SAFE_NO_PAD.encode(claims("hospital-a", ISSUER, AUDIENCE, 5).to_string())
    );
    // HS256 keyed with the public key bytes: the classic algorithm confusion.
    let public_x = serde_json::from_str::<serde_json::Value>(&keys.jwks).unwrap()["keys"][0]["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let hs256 = encode(
        &with_kid(Algorithm::HS256, EDDSA_KID),
        &claims("hospital-a", ISSUER, AUDIENCE, 5),
        &EncodingKey::from_secret(public_x.as_bytes()),
    )
    .unwrap();
    // Right key, wrong algorithm in the header.
    let es_as_rs = encode(
        &with_kid(Algorithm::RS256, ES256_KID),
        &claims("hospital-a", ISSUER, AUDIENCE, 5),
        &EncodingKey::from_rsa_pem(&keys.rs256_pem).unwrap(),
    )
    .unwrap();
    let expired = keys
        .eddsa
        .sign(
            AUDIENCE,
            "nurse",
            "hospital-a",
            &roles,
            now - chrono::Duration::hours(2),
            chrono::Duration::minutes(10),
        )
        .unwrap();
    let unknown_kid = Ed25519Signer::generate("someone-elses-key".into(), ISSUER.into())
        .unwrap()
        .sign(
            AUDIENCE,
            "x",
            "hospital-a",
            &roles,
            now,
            chrono::Duration::minutes(5),
        )
        .unwrap();
    let other_issuer = Ed25519Signer::from_pkcs8(
        keys.eddsa_pkcs8.clone(),
        EDDSA_KID.into(),
        "https://evil.example".into(),
    )
    .unwrap()
    .sign(
        AUDIENCE,
        "x",
        "hospital-a",
        &roles,
        now,
        chrono::Duration::minutes(5),
    )
    .unwrap();
    let wrong_audience = keys
        .eddsa
        .sign(
            "some-other-service",
            "x",
            "hospital-a",
            &roles,
            now,
            chrono::Duration::minutes(5),
        )
        .unwrap();

    let cases: Vec<(&str, String, &str)> = vec![
        ("forged signature", forged, "invalid_token"),
        ("alg=none", none, "invalid_token"),
        ("HS256 algorithm confusion", hs256, "invalid_token"),
        (
            "header algorithm differs from the key's",
            es_as_rs,
            "invalid_token",
        ),
        ("expired", expired, "token_expired"),
        ("unknown key id", unknown_kid, "untrusted_issuer"),
        (
            "trusted key, other issuer",
            other_issuer,
            "untrusted_issuer",
        ),
        ("wrong audience", wrong_audience, "invalid_token"),
        ("garbage", "not.a.jwt".into(), "invalid_token"),
    ];
    for (attack, token, code) in cases {
        let (s, b) = app
            .post(
                "/v1/consents",
                &token,
                Some(attack),
                &grant_body("MRN-1", &version, all_permit()),
            )
            .await;
        assert_eq!((s, b["code"].as_str()), (401, Some(code)), "{attack}: {b}");
        let (s, b) = app.get("/v1/documents", Some(&token)).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (401, Some(code)),
            "{attack} on a public route: {b}"
        );
    }
    let resp = app
        .client
        .get(app.url("/v1/reconsent-tasks?family=cancer"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (s, b) = read(resp).await;
    assert_problem(s, &b, 401, "invalid_token");
    let (s, b) = app.get("/v1/reconsent-tasks?family=cancer", None).await;
    assert_problem(s, &b, 401, "missing_token");

    assert_eq!(app.count("consent_events"), 0);
    assert_eq!(app.count("patients"), 0);
}

async fn accepted_algorithms(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let keys = issuer_keys();
    let c = claims("hospital-a", ISSUER, AUDIENCE, 5);
    let es256 = encode(
        &with_kid(Algorithm::ES256, ES256_KID),
        &c,
        &EncodingKey::from_ec_pem(&keys.es256_pem).unwrap(),
    )
    .unwrap();
    let rs256 = encode(
        &with_kid(Algorithm::RS256, RS256_KID),
        &c,
        &EncodingKey::from_rsa_pem(&keys.rs256_pem).unwrap(),
    )
    .unwrap();
    for (i, token) in [es256, rs256, app.staff("hospital-a")].iter().enumerate() {
        let (s, b) = app
            .post(
                "/v1/consents",
                token,
                Some(&format!("alg-{i}")),
                &grant_body(&format!("MRN-{i}"), &version, all_permit()),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
}

async fn mutual_tls_binds_token_to_hospital(backend: Backend) {
    let options = Options {
        client_ca: true,
        require_client_cert: false,
        client_cert_org: Some("hospital-a"),
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let version = app.publish("cancer", &first_draft()).await;
    let (s, b) = app
        .grant("hospital-a", "MRN-1", &version, all_permit(), "k1")
        .await;
    assert_eq!(s, 201, "certificate and token agree: {b}");
    let (s, b) = app
        .grant("hospital-b", "MRN-2", &version, all_permit(), "k2")
        .await;
    assert_problem(s, &b, 401, "client_certificate_mismatch");
    assert_eq!(app.count("consent_events"), 1);

    // With client certificates required, a client without one cannot connect.
    let options = Options {
        client_ca: true,
        require_client_cert: true,
        client_cert_org: None,
        ..Options::default()
    };
    let Some(strict) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let result = strict.client.get(strict.url("/healthz")).send().await;
    assert!(
        result.is_err(),
        "the TLS handshake must fail without a client certificate"
    );
}
