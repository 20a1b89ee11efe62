//! Configuration: a TOML file plus environment overrides, validated once at
//! start-up. Secrets live in `secrecy` types so `Debug` never prints them.
//!
//! Environment overrides use `GENOMEGATE__SECTION__KEY=value`, e.g.
//! `GENOMEGATE__DATABASE__URL=postgres://…` or `GENOMEGATE__MODE=production`.
//! Values are read as TOML scalars when they parse as one (numbers, booleans),
//! otherwise as strings.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const ENV_PREFIX: &str = "GENOMEGATE__";
pub use crate::keyfile::DEV_KEY_MARKER;
/// Issuer name of the development token signer (`genomegate token`).
pub const DEV_ISSUER: &str = "genomegate-dev";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub mode: Mode,
    /// Base of canonical URIs (FHIR `policy.uri`) and links.
    #[serde(default = "defaults::default_public_base_url")]
    pub public_base_url: String,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub policies: PoliciesConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub log: AccessLogConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub patients: PatientsConfig,
    #[serde(default)]
    pub screening: ScreeningConfig,
    #[serde(default)]
    pub recall: RecallConfig,
    #[serde(default)]
    pub data_access: DataAccessConfig,
}

/// Requests of members of approved uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataAccessConfig {
    /// Releases, and visa requests, each member may make per minute (each
    /// kind counted apart, per instance). A release notifies every included
    /// patient, so a script repeating it would flood a cohort.
    #[serde(default = "defaults::default_member_requests_per_minute")]
    pub member_requests_per_minute: u32,
}

/// Recall notices that no consent event causes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecallConfig {
    /// How often an instance checks whether a new day (in Japan, decision
    /// 0028) has begun, and then recalls what a proxy's permits had let
    /// releases have of the patients who came of age that day (decision
    /// 0027).
    #[serde(default = "defaults::default_came_of_age_check_ms")]
    pub came_of_age_check_ms: u64,
}

/// The periodic screening of the access log for auditors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreeningConfig {
    /// Screen each completed period and store its report.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Length of a screened period, aligned to the Unix epoch (a day by
    /// default: each report covers one UTC day).
    #[serde(default = "defaults::default_screening_period")]
    pub period_seconds: u64,
    /// An actor is unusual above this many times the median actor volume…
    #[serde(default = "defaults::default_volume_factor")]
    pub volume_factor: f64,
    /// …and above this many accesses in the period.
    #[serde(default = "defaults::default_volume_floor")]
    pub volume_floor: u64,
}

/// The tamper-evident access log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// The checkpoint origin line: names this log to verifiers. No spaces
    /// or `+`.
    #[serde(default = "defaults::default_log_origin")]
    pub origin: String,
    /// Most entries one integration (one checkpoint) takes.
    #[serde(default = "defaults::default_integrate_batch")]
    pub integrate_batch: usize,
    /// Least time between two integrations while the log is quiet. Each
    /// signs a checkpoint, so this bounds checkpoints per second; it adds
    /// at most this much to notification latency.
    #[serde(default = "defaults::default_integrate_interval_ms")]
    pub integrate_interval_ms: u64,
    /// Least time between two integrations while the log is busy (the last
    /// one took at least `integrator::BUSY_BATCH` entries). Longer, so that
    /// under load each integration's fixed cost is shared by more entries.
    #[serde(default = "defaults::default_integrate_busy_interval_ms")]
    pub integrate_busy_interval_ms: u64,
}

/// Webhook delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Attempts before a delivery is dead-lettered.
    #[serde(default = "defaults::default_max_attempts")]
    pub max_attempts: i32,
    /// First retry delay; doubles with each attempt.
    #[serde(default = "defaults::default_backoff_ms")]
    pub backoff_ms: u64,
    /// Longest retry delay.
    #[serde(default = "defaults::default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// How long a dispatcher owns a delivery it claimed. A dispatcher that
    /// dies mid-batch releases its claims when this runs out.
    #[serde(default = "defaults::default_lease_ms")]
    pub lease_ms: u64,
    #[serde(default = "defaults::default_webhook_timeout_ms")]
    pub timeout_ms: u64,
    /// Allow `http://` webhook URLs (development and tests only; production
    /// refuses them).
    #[serde(default)]
    pub allow_http: bool,
    /// Allow webhook URLs that name or resolve to private, loopback,
    /// link-local or reserved addresses. Off by default: a registered URL
    /// must not reach the deployment's internal network (SSRF). Turn it on
    /// only where webhook receivers live on a private network on purpose.
    #[serde(default)]
    pub allow_private_targets: bool,
    /// Ports a webhook URL may name (or imply by its scheme), checked at
    /// registration and again at each delivery. Empty allows every port.
    /// The default keeps a registered URL off the other services a public
    /// host listens on (SSH, databases, admin consoles).
    #[serde(default = "defaults::default_webhook_ports")]
    pub webhook_ports: Vec<u16>,
    /// Run the delivery worker in this instance. Instances that should only
    /// serve requests turn it off; deliveries wait for an instance that runs it.
    #[serde(default = "defaults::yes")]
    pub dispatch: bool,
    /// Where email to patients goes out (`smtps://user:pass@host:465`, or
    /// `smtp://host:587?tls=required`); unset, no email is sent and email
    /// deliveries wait for an instance that has it. Production refuses a
    /// server without TLS.
    #[serde(default)]
    pub smtp_url: Option<secrecy::SecretString>,
    /// The sender of email to patients.
    #[serde(default = "defaults::default_email_from")]
    pub email_from: String,
    /// A NATS server to publish every notification to, e.g.
    /// `nats://127.0.0.1:4222` (production: `tls://…`). Unset: no NATS.
    #[serde(default)]
    pub nats_url: Option<String>,
    /// Notifications go to `<nats_subject>.<patient pseudonym>`.
    #[serde(default = "defaults::default_nats_subject")]
    pub nats_subject: String,
    /// The JetStream stream that captures `<nats_subject>.>`; created when
    /// missing. Its duplicate window de-duplicates re-sent notifications.
    #[serde(default = "defaults::default_nats_stream")]
    pub nats_stream: String,
    /// Receipts a reconnecting live stream replays at most (`Last-Event-ID`).
    /// A stream that missed more replays the oldest this many and closes;
    /// the client's reconnection continues from the last one it got.
    #[serde(default = "defaults::default_stream_replay_page")]
    pub stream_replay_page: i64,
}

/// Patient enrollment and patient tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientsConfig {
    /// Lifetime of an enrollment code.
    #[serde(default = "defaults::default_enrollment_ttl_hours")]
    pub enrollment_ttl_hours: i64,
    /// Lifetime of a patient access token.
    #[serde(default = "defaults::default_patient_token_ttl")]
    pub token_ttl_seconds: i64,
    /// Enrollment and sign-in attempts allowed per client address per minute.
    #[serde(default = "defaults::default_attempts_per_minute")]
    pub attempts_per_minute: u32,
    /// The patient portal's enrollment page (`https://…`, no fragment). Set,
    /// an enrollment code's QR code carries this link with the code in its
    /// fragment (`…#code=…`); unset, it carries the bare code.
    #[serde(default)]
    pub enrollment_link: Option<String>,
    /// The portal pages' origin (`https://host[:port]`), which passkeys are
    /// bound to. Unset in development: `https://localhost` on any port.
    /// Unset in production: no portal pages (the JSON API still serves
    /// patients' apps).
    #[serde(default)]
    pub portal_origin: Option<String>,
    /// A portal session ends after this long without a request.
    #[serde(default = "defaults::default_session_idle_minutes")]
    pub session_idle_minutes: i64,
    /// A portal session ends this long after sign-in, active or not.
    #[serde(default = "defaults::default_session_hours")]
    pub session_hours: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "defaults::default_bind")]
    pub bind: SocketAddr,
    /// Worker threads; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
    /// Largest accepted request body. Consent registrations are a few KB;
    /// document versions with full texts are the largest legitimate bodies.
    #[serde(default = "defaults::default_body_limit")]
    pub body_limit_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    #[serde(default = "defaults::default_cert")]
    pub cert: PathBuf,
    #[serde(default = "defaults::default_key")]
    pub key: PathBuf,
    /// CA whose client certificates identify hospital systems (mutual TLS).
    /// Unset: no client certificates are requested.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Refuse TLS handshakes without a client certificate.
    #[serde(default)]
    pub require_client_cert: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://…`.
    #[serde(default = "defaults::default_database_url")]
    pub url: SecretString,
    #[serde(default = "defaults::default_pool_size")]
    pub pool_size: u32,
    /// Samples a release reads, decides and writes per round trip. Memory
    /// during a release is bounded by a few pages, not by the cohort.
    #[serde(default = "defaults::default_release_page")]
    pub release_page: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Audience every bearer token must carry.
    #[serde(default = "defaults::default_audience")]
    pub audience: String,
    /// Allowed clock skew when checking `exp` and `nbf`, in seconds.
    #[serde(default = "defaults::default_leeway")]
    pub leeway_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub issuer: String,
    pub jwks_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The versioned key file (patient, sample, project and vault keys);
    /// see `genomegate keys`.
    #[serde(default = "defaults::default_key_file")]
    pub file: PathBuf,
    /// Development material (certificates, JWT signing key) lives here.
    #[serde(default = "defaults::default_dev_dir")]
    pub dev_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesConfig {
    #[serde(default = "defaults::default_policies_dir")]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// `json` (default) or `pretty`.
    #[serde(default = "defaults::default_log_format")]
    pub format: String,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    #[serde(default = "defaults::default_log_level")]
    pub level: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ScreeningConfig {
    pub fn volume_rule(&self) -> crate::ledger::screening::VolumeRule {
        crate::ledger::screening::VolumeRule {
            factor: self.volume_factor,
            floor: self.volume_floor,
        }
    }
}

impl Config {
    /// Reads `path` (if given) and applies environment overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            set_path(&mut table, &keys, &value)
                .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that do not touch the filesystem. Production refusals that need
    /// key material are in `server::check_production_readiness`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.database_backend().is_none() {
            return invalid("database.url must start with sqlite:// or postgres://");
        }
        if self.database.pool_size == 0 {
            return invalid("database.pool_size must be at least 1");
        }
        if !(1..=50_000).contains(&self.database.release_page) {
            return invalid("database.release_page must be between 1 and 50000");
        }
        if self.server.body_limit_bytes < 1024 {
            return invalid("server.body_limit_bytes must be at least 1024");
        }
        if !self.public_base_url.starts_with("https://")
            && !self.public_base_url.starts_with("http://")
        {
            return invalid("public_base_url must be an http(s) URL");
        }
        if self.tls.require_client_cert && self.tls.client_ca.is_none() {
            return invalid("tls.require_client_cert needs tls.client_ca");
        }
        if !matches!(self.logging.format.as_str(), "json" | "pretty") {
            return invalid("logging.format must be `json` or `pretty`");
        }
        if self.log.origin.is_empty() || self.log.origin.contains([' ', '+', '\n']) {
            return invalid("log.origin must be non-empty without spaces or `+`");
        }
        if self.log.integrate_batch == 0
            || self.notify.max_attempts < 1
            || self.notify.stream_replay_page < 1
        {
            return invalid("log.integrate_batch, notify.max_attempts and notify.stream_replay_page must be at least 1");
        }
        if self.data_access.member_requests_per_minute == 0 {
            return invalid("data_access.member_requests_per_minute must be at least 1");
        }
        if self
            .patients
            .enrollment_link
            .as_deref()
            .is_some_and(|link| !is_enrollment_link(link))
        {
            return invalid(
                "patients.enrollment_link must be an https:// URL with a host and no fragment",
            );
        }
        if self
            .patients
            .portal_origin
            .as_deref()
            .is_some_and(|origin| !is_enrollment_link(origin) || origin[8..].contains('/'))
        {
            return invalid("patients.portal_origin must be https://host[:port], nothing more");
        }
        if self.patients.session_idle_minutes < 1
            || self.patients.session_hours < 1
            || self.patients.session_idle_minutes > self.patients.session_hours * 60
        {
            return invalid(
                "patients.session_idle_minutes and session_hours must be positive, the idle timeout no longer than the session",
            );
        }
        if self.screening.period_seconds == 0
            || !(self.screening.volume_factor.is_finite() && self.screening.volume_factor >= 1.0)
        {
            return invalid(
                "screening.period_seconds must be positive and screening.volume_factor at least 1",
            );
        }
        if !is_nats_subject(&self.notify.nats_subject)
            || !is_nats_subject(&self.notify.nats_stream)
            || self.notify.nats_stream.contains('.')
        {
            return invalid(
                "notify.nats_subject must be dot-separated tokens of letters, digits, `-` and `_`; notify.nats_stream one such token",
            );
        }
        if self.mode == Mode::Production {
            if self
                .notify
                .nats_url
                .as_deref()
                .is_some_and(|url| !url.starts_with("tls://"))
            {
                return invalid("production mode publishes to NATS only over TLS (notify.nats_url must start with tls://)");
            }
            if self.notify.smtp_url.as_ref().is_some_and(|url| {
                let url = url.expose_secret();
                !url.starts_with("smtps://") && !url.contains("tls=required")
            }) {
                return invalid("production mode sends email only over TLS (notify.smtp_url: smtps://, or tls=required)");
            }
            if self.notify.allow_http {
                return invalid("production mode refuses plain-http webhooks (notify.allow_http)");
            }
            if !self.tls.enabled {
                return invalid(
                    "production mode refuses to start without TLS (tls.enabled = false)",
                );
            }
            if self.auth.issuers.is_empty() {
                return invalid("production mode needs at least one [[auth.issuers]] entry");
            }
            if self.auth.issuers.iter().any(|i| i.issuer == DEV_ISSUER) {
                return invalid("production mode refuses the development token issuer");
            }
        }
        Ok(())
    }

    pub fn database_backend(&self) -> Option<crate::db::Backend> {
        crate::db::Backend::from_url(self.database.url.expose_secret())
    }
}

/// Whether `link` can carry an enrollment code in its fragment: an
/// `https://` URL with a host, no fragment of its own, and nothing a QR
/// reader or browser would read differently (whitespace, control
/// characters).
fn is_enrollment_link(link: &str) -> bool {
    link.strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && !link.contains('#')
        && link.chars().all(|c| c.is_ascii_graphic())
        && link.len() <= 512
}

/// A literal NATS subject: no wildcards, no empty tokens.
fn is_nats_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= 128
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn set_path(table: &mut toml::Table, keys: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a table"))?;
    }
    // Parse as a TOML scalar so numbers and booleans keep their type.
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    current.insert(last.clone(), value);
    Ok(())
}

mod defaults;

#[cfg(test)]
mod tests;
