//! Assembling and starting the service: state, TLS, mutual TLS and the
//! production-mode refusals.

use crate::api::extract::ClientCertOrg;
use crate::api::metrics::Metrics;
use crate::api::state::AppState;
use crate::app::ratelimit::RateLimiter;
use crate::app::{Context, WebhookRules};
use crate::auth::jwt::JwtVerifier;
use crate::auth::policy::PolicyEngine;
use crate::clock::SharedClock;
use crate::config::{Config, Mode, DEV_ISSUER};
use crate::consent::item_catalog::ItemCatalog;
use crate::pseudonym::keyring::Keyring;
use crate::{certs, db};
use actix_web::{web, HttpServer};
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509Name;
use secrecy::ExposeSecret;
use std::net::SocketAddr;

pub const SCOPE_ITEMS_FILE: &str = "scope-items.toml";

/// Builds everything the handlers need and runs pending migrations.
/// Fails with a message naming the setting to fix.
/// The relying party the portal's passkeys are bound to: the configured
/// origin, or in development `https://localhost` on any port (the tests'
/// and a newcomer's random or default port). Production without an origin
/// has no portal pages.
fn passkeys(config: &Config) -> Result<Option<webauthn_rs::Webauthn>, String> {
    use webauthn_rs::prelude::Url;
    let (origin, any_port) = match (&config.patients.portal_origin, config.mode) {
        (Some(origin), _) => (origin.as_str(), false),
        (None, Mode::Development) => ("https://localhost", true),
        (None, Mode::Production) => return Ok(None),
    };
    let url = Url::parse(origin).map_err(|e| format!("patients.portal_origin: {e}"))?;
    let host = url
        .host_str()
        .ok_or("patients.portal_origin needs a host")?
        .to_owned();
    webauthn_rs::WebauthnBuilder::new(&host, &url)
        .map(|b| b.rp_name("GenomeGate").allow_any_port(any_port))
        .and_then(|b| b.build())
        .map(Some)
        .map_err(|e| format!("patients.portal_origin: {e}"))
}

pub fn build_state(config: &Config, clock: SharedClock) -> Result<AppState, String> {
    let backend = config
        .database_backend()
        .ok_or("database.url must start with sqlite:// or postgres://")?;
    let pool = db::connect(
        config.database.url.expose_secret(),
        config.database.pool_size,
    )
    .map_err(|e| e.to_string())?;
    {
        let mut conn = pool
            .get()
            .map_err(|e| format!("cannot connect to the database: {e}"))?;
        let applied = db::run_migrations(&mut conn).map_err(|e| e.to_string())?;
        if !applied.is_empty() {
            tracing::info!(count = applied.len(), "database migrations applied");
        }
    }

    let mut verifier = JwtVerifier::from_issuers(
        &config.auth.issuers,
        config.auth.audience.clone(),
        config.auth.leeway_seconds,
    )?;
    match config.mode {
        Mode::Development if config.auth.issuers.is_empty() => {
            let signer = crate::auth::dev::load_or_create(&config.keys.dev_dir)?;
            verifier.trust_jwks(DEV_ISSUER, &signer.jwks_json())?;
            tracing::warn!("development mode: trusting tokens from `genomegate token`");
        }
        Mode::Production => {
            if verifier.kids().any(|k| k.starts_with("dev-")) {
                return Err("production mode refuses development signing keys (kid `dev-…`) in the issuer JWKS".into());
            }
        }
        Mode::Development => {}
    }

    let keys = std::sync::Arc::new(load_keyring(config, clock.now())?);
    let patient_issuer = config.public_base_url.trim_end_matches('/').to_owned();
    let mut patient_tokens = None;
    for key in keys.newest_first(crate::pseudonym::keyring::KeyDomain::Token) {
        let signer = patient_token_signer(key, &patient_issuer)?;
        verifier.trust_jwks(&patient_issuer, &signer.jwks_json())?;
        patient_tokens.get_or_insert(signer);
    }
    let patient_tokens = patient_tokens.ok_or("the key file has no token key")?;
    verifier.set_patient_issuer(&patient_issuer);
    let policy = PolicyEngine::load(&config.policies.dir)?;
    let catalog_path = config.policies.dir.join(SCOPE_ITEMS_FILE);
    let catalog_src = std::fs::read_to_string(&catalog_path)
        .map_err(|e| format!("cannot read {}: {e}", catalog_path.display()))?;
    let catalog = ItemCatalog::from_toml(&catalog_src)
        .map_err(|e| format!("{}: {e}", catalog_path.display()))?;

    let data_use = read_policy(&config.policies.dir, crate::access::POLICY_FILE)
        .and_then(|text| crate::access::DataUsePolicy::parse(&text))?;
    let (log, workers) = crate::workers::start(
        config,
        pool.clone(),
        backend,
        clock.clone(),
        keys.clone(),
        &data_use,
    )?;
    let diseases = read_policy(&config.policies.dir, crate::access::DISEASES_FILE)
        .and_then(|text| crate::access::duo::DiseaseHierarchy::parse(&text))?;
    let handles = handle_keys(&keys, &patient_issuer)?;
    let visas = visa_keys(&keys, &patient_issuer)?;

    let ctx = Context {
        data_use,
        diseases,
        handles,
        visas,
        versions: Default::default(),
        histories: Default::default(),
        pool,
        backend,
        policy,
        keys,
        catalog,
        clock,
        public_base_url: config.public_base_url.trim_end_matches('/').to_owned(),
        release_page: i64::from(config.database.release_page),
        stream_replay_page: config.notify.stream_replay_page,
        log,
        patient_tokens,
        token_audience: config.auth.audience.clone(),
        patients: config.patients.clone(),
        webhooks: WebhookRules {
            allow_http: config.notify.allow_http,
            allow_private_targets: config.notify.allow_private_targets,
            ports: config.notify.webhook_ports.clone(),
        },
        screening_volume: config.screening.volume_rule(),
        attempts: RateLimiter::new(config.patients.attempts_per_minute),
        passkeys: passkeys(config)?.map(std::sync::Arc::new),
        member_requests: RateLimiter::new(config.data_access.member_requests_per_minute),
    };
    Ok(AppState {
        ctx: std::sync::Arc::new(ctx),
        verifier,
        metrics: Metrics::default(),
        body_limit: config.server.body_limit_bytes,
        workers,
    })
}

fn read_policy(dir: &std::path::Path, file: &str) -> Result<String, String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every handle key version as a signer, oldest first, so handles issued
/// before a rotation still verify.
pub fn handle_keys(
    keys: &Keyring,
    issuer: &str,
) -> Result<crate::access::handle::HandleKeys, String> {
    let mut signers = Vec::new();
    for key in keys.newest_first(crate::pseudonym::keyring::KeyDomain::Handle) {
        let pkcs8 = key
            .ed25519_pkcs8()
            .ok_or("the handle key is not an Ed25519 seed")?;
        signers.push(crate::ed25519::Ed25519Signer::from_pkcs8(
            pkcs8.to_vec(),
            format!("genomegate-handle-v{}", key.version),
            issuer.to_owned(),
        )?);
    }
    signers.reverse();
    crate::access::handle::HandleKeys::new(signers)
}

/// Every visa key version, oldest first. The issuer is the service's base
/// URL, and its public keys are published beside the handles' at
/// `/.well-known/jwks.json`, which each visa's `jku` names.
pub fn visa_keys(keys: &Keyring, issuer: &str) -> Result<crate::access::visa::VisaKeys, String> {
    let mut signers = Vec::new();
    for key in keys.newest_first(crate::pseudonym::keyring::KeyDomain::Visa) {
        let pkcs8 = key.p256_pkcs8().ok_or("the visa key is not a P-256 key")?;
        signers.push((format!("genomegate-visa-v{}", key.version), pkcs8.to_vec()));
    }
    signers.reverse();
    crate::access::visa::VisaKeys::new(
        signers,
        issuer.to_owned(),
        format!("{issuer}/.well-known/jwks.json"),
    )
}

/// The signer of patient tokens under one token-key version.
pub fn patient_token_signer(
    key: &crate::pseudonym::keyring::DomainKey,
    issuer: &str,
) -> Result<crate::ed25519::Ed25519Signer, String> {
    let pkcs8 = key
        .ed25519_pkcs8()
        .ok_or("the token key is not an Ed25519 seed")?;
    crate::ed25519::Ed25519Signer::from_pkcs8(
        pkcs8.to_vec(),
        format!("genomegate-patient-v{}", key.version),
        issuer.to_owned(),
    )
}

fn load_keyring(config: &Config, now: chrono::DateTime<chrono::Utc>) -> Result<Keyring, String> {
    let path = &config.keys.file;
    if !path.exists() {
        if config.mode == Mode::Production {
            return Err(format!(
                "key file {} does not exist; create it with `genomegate keys init`",
                path.display()
            ));
        }
        Keyring::create_file(path, true, now)?;
        tracing::warn!(path = %path.display(), "development mode: created a development key file");
    }
    if config.mode == Mode::Development {
        for domain in Keyring::complete_development_file(path, now)? {
            tracing::warn!(path = %path.display(), domain = domain.as_str(), "development mode: added a missing key to the development key file");
        }
    }
    let keyring = Keyring::load(path)?;
    if keyring.is_development && config.mode == Mode::Production {
        return Err(format!(
            "production mode refuses the development key file {}",
            path.display()
        ));
    }
    Ok(keyring)
}

/// The TLS acceptor: server certificate, and with `tls.client_ca` the CA
/// whose client certificates identify hospital systems.
pub fn tls_acceptor(config: &Config) -> Result<SslAcceptorBuilder, String> {
    let tls = &config.tls;
    let err = |what: &str, e: openssl::error::ErrorStack| format!("{what}: {e}");
    let mut builder =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(|e| err("TLS", e))?;
    builder
        .set_private_key_file(&tls.key, SslFiletype::PEM)
        .map_err(|e| err(&format!("tls.key {}", tls.key.display()), e))?;
    builder
        .set_certificate_chain_file(&tls.cert)
        .map_err(|e| err(&format!("tls.cert {}", tls.cert.display()), e))?;
    builder
        .check_private_key()
        .map_err(|e| err("tls.key does not match tls.cert", e))?;
    if let Some(ca) = &tls.client_ca {
        builder
            .set_ca_file(ca)
            .map_err(|e| err(&format!("tls.client_ca {}", ca.display()), e))?;
        let names = X509Name::load_client_ca_file(ca)
            .map_err(|e| err(&format!("tls.client_ca {}", ca.display()), e))?;
        builder.set_client_ca_list(names);
        let mut mode = SslVerifyMode::PEER;
        if tls.require_client_cert {
            mode |= SslVerifyMode::FAIL_IF_NO_PEER_CERT;
        }
        builder.set_verify(mode);
    }
    Ok(builder)
}

/// A bound, not yet running server.
pub struct BoundServer {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub tls: bool,
}

/// Binds the configured address (port 0 picks a free one) with `state`.
pub fn bind(config: &Config, state: AppState) -> Result<BoundServer, String> {
    let wants_dev_certs =
        config.mode == Mode::Development && config.tls.enabled && !config.tls.cert.exists();
    if wants_dev_certs && certs::ensure_dev_set(&config.keys.dev_dir)? {
        tracing::warn!(dir = %config.keys.dev_dir.display(), "development mode: created development certificates");
    }
    let state = web::Data::new(state);
    let server = HttpServer::new(move || crate::api::app(state.clone()))
        .on_connect(|conn, extensions| {
            if let Some(tls) = conn.downcast_ref::<actix_tls::accept::openssl::TlsStream<actix_web::rt::net::TcpStream>>() {
                let org = tls.ssl().peer_certificate().and_then(|c| certs::organization_of(&c));
                extensions.insert(ClientCertOrg(org));
            }
        })
        // A page larger than a segment ends in a small write; with Nagle's
        // algorithm on, that write waits for the client's delayed ACK (40 ms
        // on Linux). Every response is written whole, so send at once.
        .tcp_nodelay(true)
        .shutdown_timeout(5);
    let server = if config.server.workers > 0 {
        server.workers(config.server.workers)
    } else {
        server
    };
    let server = if config.tls.enabled {
        server.bind_openssl(config.server.bind, tls_acceptor(config)?)
    } else {
        server.bind(config.server.bind)
    }
    .map_err(|e| format!("cannot bind {}: {e}", config.server.bind))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or("the server bound no address")?;
    Ok(BoundServer {
        addr,
        server: server.run(),
        tls: config.tls.enabled,
    })
}
