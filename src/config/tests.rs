use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_a_working_development_setup() {
    let c = Config::load(None, env(&[])).unwrap();
    assert_eq!(c.mode, Mode::Development);
    assert_eq!(c.database_backend(), Some(crate::db::Backend::Sqlite));
    assert!(c.tls.enabled);
    // A missing table gets the same defaults as an empty one.
    assert_eq!(c.auth.audience, "genomegate");
    assert_eq!(c.auth.leeway_seconds, 30);
    assert_eq!(c.server.body_limit_bytes, 256 * 1024);
    assert_eq!(c.notify.webhook_ports, [443]);
}

#[test]
fn environment_overrides_typed_values_and_secrets_stay_hidden() {
    let c = Config::load(
        None,
        env(&[
            ("GENOMEGATE__DATABASE__URL", "postgres://user:hunter2@db/gg"),
            ("GENOMEGATE__DATABASE__POOL_SIZE", "4"),
            ("GENOMEGATE__TLS__ENABLED", "false"),
            ("GENOMEGATE__NOTIFY__WEBHOOK_PORTS", "[443, 8443]"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.database.pool_size, 4);
    assert_eq!(c.notify.webhook_ports, [443, 8443]);
    assert!(!c.tls.enabled);
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn production_refuses_missing_tls_and_issuers() {
    let err = Config::load(
        None,
        env(&[
            ("GENOMEGATE__MODE", "production"),
            ("GENOMEGATE__TLS__ENABLED", "false"),
        ]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("without TLS"));
    let err = Config::load(None, env(&[("GENOMEGATE__MODE", "production")])).unwrap_err();
    assert!(err.to_string().contains("auth.issuers"));
}

/// The example the README calls complete must load and pass every
/// check that needs no files (the keys and certificates it names are
/// the operator's).
#[test]
fn the_production_example_is_a_valid_production_configuration() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/production.example.toml");
    let c = Config::load(Some(&path), env(&[])).unwrap();
    assert_eq!(c.mode, Mode::Production);
    assert!(c.tls.enabled);
    assert_eq!(c.database_backend(), Some(crate::db::Backend::Postgres));
}

#[test]
fn an_enrollment_link_is_https_with_a_host_and_no_fragment() {
    let ok = Config::load(
        None,
        env(&[(
            "GENOMEGATE__PATIENTS__ENROLLMENT_LINK",
            "https://portal.example.jp/enroll",
        )]),
    )
    .unwrap();
    assert_eq!(
        ok.patients.enrollment_link.as_deref(),
        Some("https://portal.example.jp/enroll")
    );
    for bad in [
        "http://portal.example.jp/enroll",
        "https://",
        "https:///enroll",
        "https://portal.example.jp/enroll#x",
        "https://portal.example.jp/en roll",
        "javascript:alert(1)",
    ] {
        let err = Config::load(None, env(&[("GENOMEGATE__PATIENTS__ENROLLMENT_LINK", bad)]));
        assert!(err.is_err(), "{bad:?} accepted");
    }
}

#[test]
fn nats_needs_literal_subjects_and_tls_in_production() {
    for bad in ["", "a..b", "a.*", "a.>", "a b"] {
        let err = Config::load(None, env(&[("GENOMEGATE__NOTIFY__NATS_SUBJECT", bad)]));
        assert!(err.is_err(), "{bad:?} accepted");
    }
    assert!(Config::load(None, env(&[("GENOMEGATE__NOTIFY__NATS_STREAM", "A.B")])).is_err());
    let err = Config::load(
        None,
        env(&[
            ("GENOMEGATE__MODE", "production"),
            ("GENOMEGATE__NOTIFY__NATS_URL", "nats://broker:4222"),
        ]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tls://"), "{err}");
}

#[test]
fn unknown_keys_and_bad_urls_fail_fast() {
    assert!(Config::load(None, env(&[("GENOMEGATE__DATABASE__URLL", "x")])).is_err());
    assert!(Config::load(None, env(&[("GENOMEGATE__DATABASE__URL", "mysql://x")])).is_err());
}
